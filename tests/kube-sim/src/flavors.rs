//! What a fresh cluster of each flavour holds: the default namespaces, one
//! node, and `kube-system` DNS objects shaped like GKE's kube-dns (none on
//! Autopilot, which uses Cloud DNS) or EKS/AKS/k3s/upstream CoreDNS,
//! optionally with user DNS customisations that the product must never
//! destroy; and what the distributions do to those objects later (the EKS
//! add-on update, the k3s restart). Writes through the store; no timing.

use serde_json::{Value, json};

use crate::config::Flavor;
use crate::error::ApiError;
use crate::fieldcheck::FieldValidation;
use crate::resources::idx;
use crate::store::{Ownership, PatchKind, Store, WriteCtx, Written};

/// The user DNS customisation seeded with `seed_user_dns`: a stub domain
/// served by 10.99.0.10.
pub const USER_STUB_DOMAIN: &str = "acme.internal";
pub const USER_STUB_SERVER: &str = "10.99.0.10";

/// The field manager that owns seeded add-on objects.
pub const ADDON_MANAGER: &str = "kube-addon-manager";
/// The field manager of EKS add-ons (server-side apply, operation Apply).
pub const EKS_ADDON_MANAGER: &str = "eks";
/// The field manager that owns seeded user DNS customisations.
pub const USER_MANAGER: &str = "kubectl-edit";

pub const STANDARD_COREFILE: &str = ".:53 {
    errors
    health {
        lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf
    cache 30
    loop
    reload
    loadbalance
}
";

pub const AKS_COREFILE: &str = ".:53 {
    errors
    ready
    health {
        lameduck 5s
    }
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf
    cache 30
    loop
    reload
    loadbalance
    import custom/*.override
}
import custom/*.server
";

/// The Corefile of k3s's bundled CoreDNS manifest (`manifests/coredns.yaml`).
pub const K3S_COREFILE: &str = ".:53 {
    errors
    health
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
      pods insecure
      fallthrough in-addr.arpa ip6.arpa
    }
    hosts /etc/coredns/NodeHosts {
      ttl 60
      reload 15s
      fallthrough
    }
    prometheus :9153
    forward . /etc/resolv.conf
    cache 30
    loop
    reload
    loadbalance
    import /etc/coredns/custom/*.override
}
import /etc/coredns/custom/*.server
";

/// The field manager of k3s's manifest deploy controller.
pub fn k3s_manager(zone: &str) -> String {
    format!("deploy@{}", crate::controllers::node_name(zone))
}

/// What a k3s server does to its bundled CoreDNS manifest when it starts:
/// the `coredns` ConfigMap is written again as shipped (any edit is lost);
/// `coredns-custom`, which k3s does not ship, is left alone.
pub fn k3s_restart(store: &mut Store, zone: &str) -> Result<Written, ApiError> {
    let node_ip = store.net.node_ip();
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "coredns", "namespace": "kube-system"},
        "data": {
            "Corefile": K3S_COREFILE,
            "NodeHosts": format!("{node_ip} {}\n", crate::controllers::node_name(zone)),
        },
    });
    store.put_as(idx::CONFIGMAP, "kube-system", cm, &k3s_manager(zone))
}

pub fn user_server_block() -> String {
    format!(
        "{USER_STUB_DOMAIN}:53 {{\n    errors\n    cache 30\n    forward . {USER_STUB_SERVER}\n}}\n"
    )
}

fn dns_deployment(name: &str, flavor: Flavor) -> Value {
    let containers = if flavor == Flavor::Gke {
        json!([
            {"name": "kubedns", "image": "gke.gcr.io/k8s-dns-kube-dns:1.23.0-gke.9",
             "args": ["--domain=cluster.local.", "--dns-port=10053", "--config-dir=/kube-dns-config"],
             "ports": [{"containerPort": 10053, "name": "dns-local", "protocol": "UDP"}]},
            {"name": "dnsmasq", "image": "gke.gcr.io/k8s-dns-dnsmasq-nanny:1.23.0-gke.9",
             "ports": [{"containerPort": 53, "name": "dns", "protocol": "UDP"},
                       {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"}]},
            {"name": "sidecar", "image": "gke.gcr.io/k8s-dns-sidecar:1.23.0-gke.9"}
        ])
    } else {
        json!([
            {"name": "coredns", "image": "registry.k8s.io/coredns/coredns:v1.11.3",
             "args": ["-conf", "/etc/coredns/Corefile"],
             "ports": [{"containerPort": 53, "name": "dns", "protocol": "UDP"},
                       {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"},
                       {"containerPort": 9153, "name": "metrics", "protocol": "TCP"}]}
        ])
    };
    let mut labels = json!({"k8s-app": "kube-dns"});
    if flavor == Flavor::Eks {
        labels["eks.amazonaws.com/component"] = json!("coredns");
    }
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "kube-system", "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"k8s-app": "kube-dns"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "10%", "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": containers, "dnsPolicy": "Default", "priorityClassName": "system-cluster-critical"},
            },
        },
    })
}

/// The CoreDNS ConfigMap of the EKS add-on, as the add-on applies it.
fn eks_coredns_configmap() -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "coredns", "namespace": "kube-system",
                     "labels": {"eks.amazonaws.com/component": "coredns", "k8s-app": "kube-dns"}},
        "data": {"Corefile": STANDARD_COREFILE},
    })
}

/// What an EKS add-on create or update with `resolveConflicts: OVERWRITE`
/// does to the CoreDNS ConfigMap: a forced server-side apply by field
/// manager `eks`, which takes back every field it manages (`data.Corefile`)
/// from whoever changed it.
pub fn eks_addon_apply(store: &mut Store) -> Result<Written, ApiError> {
    let ctx = WriteCtx {
        ownership: Ownership::Update(EKS_ADDON_MANAGER),
        dry_run: false,
        validation: FieldValidation::Ignore,
    };
    store.patch(
        idx::CONFIGMAP,
        "kube-system",
        "coredns",
        PatchKind::Apply,
        &eks_coredns_configmap(),
        false,
        true,
        ctx,
    )
}

/// Seed a fresh cluster.
pub fn seed(
    store: &mut Store,
    flavor: Flavor,
    zone: &str,
    region: &str,
    seed_user_dns: bool,
    allocatable: crate::Allocatable,
) {
    let resources = json!({
        "cpu": format!("{}m", allocatable.cpu_millis),
        "memory": format!("{}Ki", allocatable.memory_bytes / 1024),
        "pods": "110",
    });
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        store.put_internal(idx::NAMESPACE, "", json!({"metadata": {"name": ns}}));
    }
    let node = crate::controllers::node_name(zone);
    let node_ip = store.net.node_ip().to_string();
    let pod_cidr = store.net.pod_cidr();
    store.put_internal(
        idx::NODE,
        "",
        json!({
            "metadata": {"name": node, "labels": {
                "kubernetes.io/hostname": node, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                "topology.kubernetes.io/zone": zone, "topology.kubernetes.io/region": region,
            }},
            "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
            "status": {
                "capacity": resources, "allocatable": resources,
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                "addresses": [{"type": "InternalIP", "address": node_ip}, {"type": "Hostname", "address": node}],
                "nodeInfo": {"kubeletVersion": "v1.36.0-kube-sim", "architecture": "amd64", "operatingSystem": "linux"},
            },
        }),
    );
    let dns_ip = store.net.dns_service_ip().to_string();
    let kube_dns = matches!(flavor, Flavor::Gke | Flavor::GkeAutopilot);
    let dns_name = if kube_dns { "kube-dns" } else { "coredns" };
    let put = |store: &mut Store, res: usize, obj: Value, manager: &str| {
        store
            .put_as(res, "kube-system", obj, manager)
            .expect("seed objects are valid");
    };
    // Autopilot: Cloud DNS serves cluster DNS from outside the cluster.
    if flavor != Flavor::GkeAutopilot {
        put(
            store,
            idx::DEPLOYMENT,
            dns_deployment(dns_name, flavor),
            ADDON_MANAGER,
        );
    }
    let mut svc_labels = json!({"k8s-app": "kube-dns", "kubernetes.io/name": if kube_dns { "KubeDNS" } else { "CoreDNS" }});
    if flavor == Flavor::Eks {
        svc_labels["eks.amazonaws.com/component"] = json!("kube-dns");
    }
    put(
        store,
        idx::SERVICE,
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": svc_labels},
            "spec": {
                "clusterIP": dns_ip,
                "selector": {"k8s-app": "kube-dns"},
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                ],
            },
        }),
        ADDON_MANAGER,
    );
    let cm = |name: &str, data: Value| {
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "kube-system",
                         "labels": {"addonmanager.kubernetes.io/mode": "EnsureExists"}},
            "data": data,
        })
    };
    match flavor {
        Flavor::Gke | Flavor::GkeAutopilot => {
            put(
                store,
                idx::CONFIGMAP,
                cm("kube-dns", json!({})),
                ADDON_MANAGER,
            );
            if seed_user_dns {
                let stub = json!({USER_STUB_DOMAIN: [USER_STUB_SERVER]}).to_string();
                put(
                    store,
                    idx::CONFIGMAP,
                    cm("kube-dns", json!({"stubDomains": stub})),
                    USER_MANAGER,
                );
            }
        }
        Flavor::Eks | Flavor::Generic => {
            if flavor == Flavor::Eks {
                eks_addon_apply(store).expect("the add-on's ConfigMap is valid");
            } else {
                put(
                    store,
                    idx::CONFIGMAP,
                    cm("coredns", json!({"Corefile": STANDARD_COREFILE})),
                    ADDON_MANAGER,
                );
            }
            if seed_user_dns {
                let corefile = format!("{STANDARD_COREFILE}{}", user_server_block());
                put(
                    store,
                    idx::CONFIGMAP,
                    cm("coredns", json!({"Corefile": corefile})),
                    USER_MANAGER,
                );
            }
        }
        Flavor::K3s => {
            k3s_restart(store, zone).expect("the k3s ConfigMap is valid");
            if seed_user_dns {
                put(
                    store,
                    idx::CONFIGMAP,
                    cm(
                        "coredns-custom",
                        json!({"user.server": user_server_block()}),
                    ),
                    USER_MANAGER,
                );
            }
        }
        Flavor::Aks => {
            put(
                store,
                idx::CONFIGMAP,
                cm("coredns", json!({"Corefile": AKS_COREFILE})),
                ADDON_MANAGER,
            );
            put(
                store,
                idx::CONFIGMAP,
                cm("coredns-custom", json!({})),
                ADDON_MANAGER,
            );
            if seed_user_dns {
                put(
                    store,
                    idx::CONFIGMAP,
                    cm(
                        "coredns-custom",
                        json!({"user.server": user_server_block()}),
                    ),
                    USER_MANAGER,
                );
            }
        }
    }
}
