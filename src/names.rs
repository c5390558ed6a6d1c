//! Every name, label, port and default the program uses, in one place.
//!
//! Object names match CockroachDB's `cloud/kubernetes/multiregion` manifests
//! so that users of the original find what they expect. Nothing here does I/O.

/// Field manager for server-side apply; one for every write we make.
pub const FIELD_MANAGER: &str = "crdb-multiregion";
/// Field manager of the "initialised" annotation only, kept apart from the
/// applied fields so re-applying the StatefulSet never removes it.
pub const INIT_FIELD_MANAGER: &str = "crdb-multiregion-init";
/// Annotation on the first zone's StatefulSet once `cockroach init` succeeded.
pub const INITIALIZED_ANNOTATION: &str = "crdb-multiregion/initialized";
/// Annotation on a zone's namespace when `apply` created it (absent on a
/// namespace that existed before: teardown then deletes only our objects in
/// it, never the namespace).
pub const NAMESPACE_CREATED_ANNOTATION: &str = "crdb-multiregion/created-namespace";
/// Annotation recording the digest of our DNS forwarding: on the DNS
/// ConfigMap, what it holds; on the DNS Deployment's pod template, what its
/// pods were last restarted for. Apply and teardown restart DNS until the
/// two agree.
pub const DNS_FORWARDING_ANNOTATION: &str = "crdb-multiregion/dns-forwarding";

/// `app.kubernetes.io/managed-by` value on everything we create.
pub const MANAGED_BY_KEY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "crdb-multiregion";
/// Label carrying the federation name from the config.
pub const FEDERATION_KEY: &str = "crdb-multiregion/federation";
/// Label carrying the zone an object was planned for.
pub const ZONE_KEY: &str = "crdb-multiregion/zone";
/// Selector label of the CockroachDB pods (same as the original manifests).
pub const APP_KEY: &str = "app";
pub const APP: &str = "cockroachdb";

/// Namespace-scoped names (same as the original).
pub const STATEFULSET: &str = "cockroachdb";
pub const HEADLESS_SERVICE: &str = "cockroachdb";
pub const PUBLIC_SERVICE: &str = "cockroachdb-public";
pub const PDB: &str = "cockroachdb-budget";
pub const SERVICE_ACCOUNT: &str = "cockroachdb";
pub const INIT_JOB: &str = "cluster-init-secure";
pub const NODE_SECRET: &str = "cockroachdb.node";
pub const CLIENT_SECRET: &str = "cockroachdb.client.root";
/// The ConfigMap holding the cross-cluster join list, read by the container
/// at start (through the environment variable [`JOIN_ENV`]) so that the list
/// is not part of the pod template: a change of it restarts no pod.
pub const JOIN_CONFIGMAP: &str = "cockroachdb-join";
/// The key of [`JOIN_CONFIGMAP`] holding the comma-separated join list.
pub const JOIN_KEY: &str = "join";
/// The container's environment variable set from [`JOIN_CONFIGMAP`].
pub const JOIN_ENV: &str = "CRDB_JOIN_ADDRESSES";

/// The DNS load balancer in `kube-system`.
pub const DNS_LB_SERVICE: &str = "kube-dns-lb";
pub const KUBE_SYSTEM: &str = "kube-system";
pub const DEFAULT_NAMESPACE: &str = "default";
/// Label selecting the cluster's DNS pods (kube-dns and CoreDNS alike).
pub const DNS_POD_KEY: &str = "k8s-app";
pub const DNS_POD_VALUE: &str = "kube-dns";
/// The cluster DNS Service every distribution keeps in kube-system.
pub const CLUSTER_DNS_SERVICE: &str = "kube-dns";

/// Ports.
pub const GRPC_PORT: u16 = 26257;
pub const HTTP_PORT: u16 = 8080;

/// Where certificates are mounted inside the pods.
pub const NODE_CERTS_MOUNT: &str = "/cockroach/cockroach-certs";
pub const CLIENT_CERTS_MOUNT: &str = "/cockroach-certs";

/// Config defaults.
pub const DEFAULT_FEDERATION: &str = "cockroachdb";
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";
pub const DEFAULT_CERTS_DIR: &str = "certs";
pub const DEFAULT_CA_KEY: &str = "my-safe-directory/ca.key";
pub const DEFAULT_GENERATED_DIR: &str = "generated";
pub const DEFAULT_IMAGE: &str = "cockroachdb/cockroach:v25.4.1";
pub const DEFAULT_STORAGE: &str = "100Gi";
/// CPU and memory of each CockroachDB container, requests = limits, as in
/// CockroachDB's own Kubernetes manifests (`cloud/kubernetes`).
pub const DEFAULT_CPU: &str = "2";
pub const DEFAULT_MEMORY: &str = "8Gi";
/// `--cache` and `--max-sql-memory` are each this fraction of the memory
/// limit (CockroachDB's manifests: `$(expr $MEMORY_LIMIT_MIB / 4)MiB`).
pub const CACHE_FRACTION_DENOMINATOR: u64 = 4;
pub const DEFAULT_REPLICAS: u32 = 3;

/// The per-pod DNS name other nodes join through: `cockroachdb-<i>.cockroachdb.<ns>`.
pub fn pod_host(ordinal: u32, namespace: &str) -> String {
    format!("{STATEFULSET}-{ordinal}.{HEADLESS_SERVICE}.{namespace}")
}

/// The DNS suffix every zone's Services live under; forwarded between clusters.
pub fn zone_domain(namespace: &str, cluster_domain: &str) -> String {
    format!("{namespace}.svc.{cluster_domain}")
}
