//! Pre-flight of one zone's cluster, bounded by its own timeout: the API
//! server answers (and its version is supported), the user may do what
//! apply and teardown need (rules reviews, then access reviews for what
//! they do not show), which DNS server the cluster runs, and in the same
//! round the objects apply will need ([`crate::k8s::known`]). Every problem
//! found is returned with a hint, not just the first.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
    SelfSubjectRulesReview, SelfSubjectRulesReviewSpec,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use serde::Serialize;

use super::{Cluster, ConnectError, error_text};
use crate::config::Zone;
use crate::dns::DnsProvider;
use crate::names;

/// Oldest Kubernetes minor version we support (policy/v1 PDBs, mixed-protocol
/// LoadBalancer Services).
pub const MIN_MINOR: u32 = 26;

/// How long pre-flight may take in one zone by default (`--preflight-timeout`):
/// a healthy API server answers in well under a second; one that keeps
/// answering 429/503 is reported with what it said instead of being retried
/// until the overall timeout.
pub const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads, together with pre-flight, what apply will need about the zone's
/// objects: the zone namespace; our Secrets, Services and ConfigMaps in
/// every namespace (by our label); and the RBAC objects, PDB and
/// StatefulSet in the zone namespace. A list that fails (e.g. not allowed
/// across namespaces) leaves its kind unknown: the objects are then read
/// one by one when needed.
async fn read_known(cluster: &Cluster) {
    let c = &cluster.client;
    let ns = cluster.namespace.as_str();
    let ours =
        ListParams::default().labels(&format!("{}={}", names::MANAGED_BY_KEY, names::MANAGED_BY));
    let all = ListParams::default();
    let known = &cluster.known;
    let namespace = async {
        if let Ok(found) = Api::<Namespace>::all(c.clone()).get_opt(ns).await {
            known.read("", ns, found.as_ref());
        }
    };
    macro_rules! list {
        ($kind:ty, $api:expr, $scope:expr, $params:expr, $labelled:expr) => {
            async {
                let api: Api<$kind> = $api;
                if let Ok(list) = api.list($params).await {
                    known.listed($scope, $labelled, &list.items);
                }
            }
        };
    }
    tokio::join!(
        namespace,
        list!(Secret, Api::all(c.clone()), None, &ours, true),
        list!(Service, Api::all(c.clone()), None, &ours, true),
        list!(ConfigMap, Api::all(c.clone()), None, &ours, true),
        list!(
            ServiceAccount,
            Api::namespaced(c.clone(), ns),
            Some(ns),
            &all,
            false
        ),
        list!(Role, Api::namespaced(c.clone(), ns), Some(ns), &all, false),
        list!(
            RoleBinding,
            Api::namespaced(c.clone(), ns),
            Some(ns),
            &all,
            false
        ),
        list!(
            PodDisruptionBudget,
            Api::namespaced(c.clone(), ns),
            Some(ns),
            &all,
            false
        ),
        list!(
            StatefulSet,
            Api::namespaced(c.clone(), ns),
            Some(ns),
            &all,
            false
        ),
    );
}

/// The problem (with its causes and hint) of a zone whose client could not
/// be built.
pub fn connect_problem(e: &ConnectError, context: &str) -> PreflightProblem {
    let mut chain = crate::output::error_chain(e);
    PreflightProblem {
        problem: chain.remove(0),
        causes: chain,
        hint: e.hint(context),
    }
}

/// What pre-flight learned about a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterInfo {
    pub version: String,
    pub dns: DnsServer,
}

/// The DNS server a cluster runs and the Deployment to restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsServer {
    #[serde(serialize_with = "display")]
    pub provider: DnsProvider,
    pub deployment: String,
}

fn display<S: serde::Serializer, T: std::fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// A pre-flight failure: what happened, why (its causes, each once, outer
/// first) and a hint for the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreflightProblem {
    pub problem: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<String>,
    pub hint: String,
}

impl PreflightProblem {
    fn new(problem: String, hint: impl Into<String>) -> Self {
        PreflightProblem {
            problem,
            causes: Vec::new(),
            hint: hint.into(),
        }
    }
}

impl PreflightProblem {
    /// The problem and its causes on one line, without the hint.
    pub fn text(&self) -> String {
        std::iter::once(self.problem.as_str())
            .chain(self.causes.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(": ")
    }
}

impl std::fmt::Display for PreflightProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (hint: {})", self.text(), self.hint)
    }
}

/// Whether the API server of `cluster` answers, and its version. Bounded by
/// `timeout` (retries of 429/503/504 included); the problem says what the
/// server last answered.
pub async fn reach(
    cluster: &Cluster,
    timeout: Duration,
) -> Result<k8s_openapi::apimachinery::pkg::version::Info, PreflightProblem> {
    match tokio::time::timeout(timeout, cluster.client.apiserver_version()).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(unusable(cluster, &e)),
        Err(_) => Err(timed_out(cluster, timeout)),
    }
}

fn timed_out(cluster: &Cluster, timeout: Duration) -> PreflightProblem {
    let last = match cluster.seen.describe() {
        Some(seen) => format!("; it last answered {seen}"),
        None => "; no answer at all".to_string(),
    };
    PreflightProblem::new(
        format!(
            "pre-flight got no usable answer from the API server {} within {}{last}",
            cluster.server,
            crate::cli::format_duration(timeout)
        ),
        "429 and 503 mean the API server is overloaded or starting: wait and re-run, or give it longer with --preflight-timeout",
    )
}

/// A failed request to the API server, by what it says about the server.
fn unusable(cluster: &Cluster, e: &kube::Error) -> PreflightProblem {
    let context = &cluster.context;
    match e {
        kube::Error::Api(s) => {
            let reason = http::StatusCode::from_u16(s.code)
                .ok()
                .and_then(|c| c.canonical_reason())
                .unwrap_or_default();
            let mut message: String = s.message.split_whitespace().collect::<Vec<_>>().join(" ");
            if message.chars().count() > 200 {
                message = message.chars().take(200).collect::<String>() + "...";
            }
            let hint = match s.code {
                401 => format!(
                    "the credentials of context {context} were not accepted (expired?): log in again, then check `kubectl --context {context} get ns`"
                ),
                403 => format!(
                    "the user of context {context} may not read /version: use a context with cluster-admin rights"
                ),
                429 | 503 | 504 => {
                    "the API server is overloaded or starting: wait and re-run".into()
                }
                _ => format!(
                    "the API server runs but fails: check the control plane's health (`kubectl --context {context} get --raw '/readyz?verbose'`) or the cloud console"
                ),
            };
            PreflightProblem {
                problem: format!(
                    "the API server {} answered GET /version with {} {reason}",
                    cluster.server, s.code
                ),
                causes: if message.is_empty() {
                    Vec::new()
                } else {
                    vec![message]
                },
                hint,
            }
        }
        kube::Error::Auth(_) => PreflightProblem {
            problem: "could not get credentials".into(),
            causes: crate::output::error_chain(e),
            hint: format!(
                "run `kubectl --context {context} get ns` to see the credential plugin's own advice (often: log in again)"
            ),
        },
        _ => PreflightProblem {
            problem: format!("the API server {} is not reachable", cluster.server),
            causes: crate::output::error_chain(e),
            hint: format!(
                "check that the cluster is up and that `kubectl --context {context} get ns` works from here (same kubeconfig, HTTPS_PROXY and NO_PROXY)"
            ),
        },
    }
}

/// The permissions apply and teardown need: (verb, group, resource, namespace).
fn required_permissions(
    namespace: &str,
) -> Vec<(&'static str, &'static str, &'static str, Option<String>)> {
    let ns = Some(namespace.to_string());
    let default = Some(names::DEFAULT_NAMESPACE.to_string());
    let system = Some(names::KUBE_SYSTEM.to_string());
    vec![
        ("patch", "", "namespaces", None),
        ("delete", "", "namespaces", None),
        ("patch", "", "secrets", ns.clone()),
        ("patch", "", "secrets", default.clone()),
        ("patch", "", "configmaps", ns.clone()),
        ("patch", "", "services", ns.clone()),
        ("patch", "", "services", default),
        ("patch", "", "services", system.clone()),
        ("patch", "", "serviceaccounts", ns.clone()),
        ("patch", "rbac.authorization.k8s.io", "roles", ns.clone()),
        (
            "patch",
            "rbac.authorization.k8s.io",
            "rolebindings",
            ns.clone(),
        ),
        ("patch", "policy", "poddisruptionbudgets", ns.clone()),
        ("patch", "apps", "statefulsets", ns.clone()),
        ("create", "batch", "jobs", ns.clone()),
        ("list", "", "pods", ns),
        ("update", "", "configmaps", system.clone()),
        ("create", "", "configmaps", system.clone()),
        ("patch", "apps", "deployments", system),
    ]
}

/// Reachability, version, permissions and DNS server of one cluster, within
/// `timeout` in all. Every problem found is returned, not just the first.
pub async fn preflight(
    cluster: &Cluster,
    zone: &Zone,
    provider_override: Option<DnsProvider>,
    timeout: Duration,
) -> Result<ClusterInfo, Vec<PreflightProblem>> {
    match tokio::time::timeout(timeout, preflight_checks(cluster, zone, provider_override)).await {
        Ok(result) => result,
        Err(_) => Err(vec![timed_out(cluster, timeout)]),
    }
}

async fn preflight_checks(
    cluster: &Cluster,
    zone: &Zone,
    provider_override: Option<DnsProvider>,
) -> Result<ClusterInfo, Vec<PreflightProblem>> {
    // One round: nothing here depends on another answer.
    let (version, mut problems, dns, ()) = tokio::join!(
        cluster.client.apiserver_version(),
        permission_problems(cluster, &zone.namespace),
        detect_dns_known(cluster, provider_override),
        read_known(cluster),
    );
    let version = version.map_err(|e| vec![unusable(cluster, &e)])?;
    let minor: u32 = version.minor.trim_end_matches('+').parse().unwrap_or(0);
    if version.major != "1" || minor < MIN_MINOR {
        problems.insert(
            0,
            PreflightProblem::new(
                format!("Kubernetes {} is not supported", version.git_version),
                format!("upgrade the cluster to 1.{MIN_MINOR} or newer"),
            ),
        );
    }
    match dns {
        Ok(dns) => {
            if problems.is_empty() {
                return Ok(ClusterInfo {
                    version: version.git_version,
                    dns,
                });
            }
        }
        Err(p) => problems.push(p),
    }
    Err(problems)
}

/// The namespace whose rules decide a permission: its own, or for the
/// cluster-scoped `namespaces` the zone namespace itself (the API server
/// gives a request for `/api/v1/namespaces/{name}` the namespace `{name}`,
/// and we only ever write our zone namespace).
fn rules_namespace<'a>(ns: &'a Option<String>, zone_namespace: &'a str) -> &'a str {
    ns.as_deref().unwrap_or(zone_namespace)
}

/// Whether a rule of a SelfSubjectRulesReview grants `verb` on
/// `group/resource` (for any object name: rules limited to names do not).
fn rule_allows(
    rule: &k8s_openapi::api::authorization::v1::ResourceRule,
    verb: &str,
    group: &str,
    resource: &str,
) -> bool {
    let has = |list: &Option<Vec<String>>, want: &str| {
        list.as_ref()
            .is_some_and(|l| l.iter().any(|x| x == "*" || x == want))
    };
    rule.verbs.iter().any(|v| v == "*" || v == verb)
        && has(&rule.api_groups, group)
        && has(&rule.resources, resource)
        && rule.resource_names.as_ref().is_none_or(Vec::is_empty)
}

/// The permissions apply and teardown need that are missing. One
/// SelfSubjectRulesReview per namespace involved (all at once) lists what
/// the user may do there; a permission those rules do not show (the list
/// can be incomplete: other authorizers than RBAC, webhooks, as `kubectl
/// auth can-i --list` warns) or a server that does not serve rules reviews
/// is then asked about with a SelfSubjectAccessReview, the authoritative
/// answer.
async fn permission_problems(cluster: &Cluster, zone_namespace: &str) -> Vec<PreflightProblem> {
    let wanted = required_permissions(zone_namespace);
    let mut namespaces: Vec<String> = wanted
        .iter()
        .map(|(_, _, _, ns)| rules_namespace(ns, zone_namespace).to_string())
        .collect();
    namespaces.sort();
    namespaces.dedup();
    let reviews = namespaces.iter().map(|ns| {
        let client = cluster.client.clone();
        async move {
            let review = SelfSubjectRulesReview {
                spec: SelfSubjectRulesReviewSpec {
                    namespace: Some(ns.clone()),
                },
                ..SelfSubjectRulesReview::default()
            };
            let api: Api<SelfSubjectRulesReview> = Api::all(client);
            let rules = api
                .create(&PostParams::default(), &review)
                .await
                .ok()
                .and_then(|r| r.status)
                .map(|s| s.resource_rules)
                .unwrap_or_default();
            (ns.clone(), rules)
        }
    });
    let rules: std::collections::BTreeMap<String, Vec<_>> = futures::future::join_all(reviews)
        .await
        .into_iter()
        .collect();
    let unsure = wanted
        .into_iter()
        .filter(|(verb, group, resource, ns)| {
            !rules
                .get(rules_namespace(ns, zone_namespace))
                .is_some_and(|r| r.iter().any(|r| rule_allows(r, verb, group, resource)))
        })
        .map(|(verb, group, resource, ns)| {
            let client = cluster.client.clone();
            async move {
                let review = SelfSubjectAccessReview {
                    spec: SelfSubjectAccessReviewSpec {
                        resource_attributes: Some(ResourceAttributes {
                            verb: Some(verb.into()),
                            group: Some(group.into()),
                            resource: Some(resource.into()),
                            namespace: ns.clone(),
                            ..ResourceAttributes::default()
                        }),
                        ..SelfSubjectAccessReviewSpec::default()
                    },
                    ..SelfSubjectAccessReview::default()
                };
                let api: Api<SelfSubjectAccessReview> = Api::all(client);
                let result = api.create(&PostParams::default(), &review).await;
                (verb, group, resource, ns, result)
            }
        });
    let mut problems = Vec::new();
    for (verb, group, resource, ns, result) in futures::future::join_all(unsure).await {
        let what = format!(
            "{verb} {}{resource}{}",
            if group.is_empty() {
                String::new()
            } else {
                format!("{group}/")
            },
            ns.map(|n| format!(" in namespace {n}")).unwrap_or_default()
        );
        match result {
            Ok(r) if r.status.as_ref().is_some_and(|s| s.allowed) => {}
            Ok(_) => problems.push(PreflightProblem::new(
                format!("not allowed to {what}"),
                "use a context with cluster-admin rights (the original setup needed them too)",
            )),
            Err(e) => problems.push(PreflightProblem::new(
                format!("could not check permission to {what}: {}", error_text(&e)),
                "the API server must serve authorization.k8s.io/v1 SelfSubjectAccessReview",
            )),
        }
    }
    problems
}

/// [`detect_dns`] from two lists that apply keeps (kube-system's
/// ConfigMaps and its DNS Deployments), so that the DNS ConfigMap, our
/// backup of it and the DNS Deployment need no further read; the
/// `kube-dns` Service is read only when no DNS Deployment is found.
async fn detect_dns_known(
    cluster: &Cluster,
    provider_override: Option<DnsProvider>,
) -> Result<DnsServer, PreflightProblem> {
    let client = &cluster.client;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), names::KUBE_SYSTEM);
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), names::KUBE_SYSTEM);
    let selector = format!("{}={}", names::DNS_POD_KEY, names::DNS_POD_VALUE);
    let by_label = ListParams::default().labels(&selector);
    let every = ListParams::default();
    let (list, cms) = tokio::join!(deployments.list(&by_label), configmaps.list(&every));
    if let Ok(list) = &list {
        cluster
            .known
            .listed(Some(names::KUBE_SYSTEM), true, &list.items);
    }
    let (custom, corefile) = match cms {
        Ok(cms) => {
            cluster
                .known
                .listed(Some(names::KUBE_SYSTEM), false, &cms.items);
            let find = |name: &str| {
                cms.items
                    .iter()
                    .find(|c| c.metadata.name.as_deref() == Some(name))
                    .cloned()
            };
            (
                Ok(find(DnsProvider::CoreDnsCustom.configmap_name())),
                find(DnsProvider::CoreDns.configmap_name()),
            )
        }
        // Not allowed to list: read the two by name, as detect_dns does.
        Err(_) => {
            let (custom, corefile) = tokio::join!(
                configmaps.get_opt(DnsProvider::CoreDnsCustom.configmap_name()),
                configmaps.get_opt(DnsProvider::CoreDns.configmap_name())
            );
            (custom, corefile.ok().flatten())
        }
    };
    detect_from(client, provider_override, list, custom, corefile, None).await
}

/// Which DNS server runs: CoreDNS (with AKS's `coredns-custom` when that
/// ConfigMap exists) or kube-dns, found by the Deployment of the pods
/// labelled `k8s-app=kube-dns` in kube-system.
pub async fn detect_dns(
    client: &Client,
    provider_override: Option<DnsProvider>,
) -> Result<DnsServer, PreflightProblem> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), names::KUBE_SYSTEM);
    let selector = format!("{}={}", names::DNS_POD_KEY, names::DNS_POD_VALUE);
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), names::KUBE_SYSTEM);
    let services: Api<Service> = Api::namespaced(client.clone(), names::KUBE_SYSTEM);
    let by_label = ListParams::default().labels(&selector);
    let (list, custom, dns_service, corefile) = tokio::join!(
        deployments.list(&by_label),
        configmaps.get_opt(DnsProvider::CoreDnsCustom.configmap_name()),
        services.get_opt(names::CLUSTER_DNS_SERVICE),
        configmaps.get_opt(DnsProvider::CoreDns.configmap_name())
    );
    let managed_outside = matches!(dns_service, Ok(Some(_)));
    detect_from(
        client,
        provider_override,
        list,
        custom,
        corefile.ok().flatten(),
        Some(managed_outside),
    )
    .await
}

/// The detection of [`detect_dns`] from what was read; `managed_outside`
/// (whether the `kube-dns` Service exists) is read here when `None` and
/// needed.
async fn detect_from(
    client: &Client,
    provider_override: Option<DnsProvider>,
    list: Result<kube::core::ObjectList<Deployment>, kube::Error>,
    custom: Result<Option<ConfigMap>, kube::Error>,
    corefile: Option<ConfigMap>,
    managed_outside: Option<bool>,
) -> Result<DnsServer, PreflightProblem> {
    let selector = format!("{}={}", names::DNS_POD_KEY, names::DNS_POD_VALUE);
    // k3s writes `coredns` again from its bundled manifest on every server
    // start, and imports the optional `coredns-custom` ConfigMap (k3s docs,
    // "Networking services", CoreDNS): a Corefile that imports it says that
    // `coredns-custom` is the place for our server blocks, even before it
    // exists. Unreadable: detection falls back to the ConfigMap's presence.
    let imports_custom = matches!(&corefile, Some(cm) if cm
        .data
        .as_ref()
        .and_then(|d| d.get(crate::dns::COREFILE_KEY))
        .is_some_and(|c| imports_custom_servers(c)));
    let list = list.map_err(|e| {
        PreflightProblem::new(
            format!(
                "could not list DNS Deployments in kube-system: {}",
                error_text(&e)
            ),
            "the context needs read access to kube-system",
        )
    })?;
    let has_custom = custom
        .map_err(|e| {
            PreflightProblem::new(
                format!(
                    "could not read ConfigMap kube-system/coredns-custom: {}",
                    error_text(&e)
                ),
                "the context needs read access to kube-system",
            )
        })?
        .is_some();
    let names_found: Vec<String> = list
        .items
        .iter()
        .filter_map(|d| d.metadata.name.clone())
        .collect();
    let coredns = names_found.iter().find(|n| n.contains("coredns")).cloned();
    let kube_dns = names_found
        .iter()
        .find(|n| n.as_str() == "kube-dns")
        .cloned();
    let detected = match (&coredns, &kube_dns) {
        (Some(d), _) if has_custom || imports_custom => {
            Some((DnsProvider::CoreDnsCustom, d.clone()))
        }
        (Some(d), _) => Some((DnsProvider::CoreDns, d.clone())),
        (None, Some(d)) => Some((DnsProvider::KubeDns, d.clone())),
        (None, None) => None,
    };
    // A `kube-dns` Service with no DNS pods behind it: the cluster's DNS
    // is served from outside the cluster (GKE Autopilot and GKE with Cloud
    // DNS: "Autopilot uses Cloud DNS"; "For Autopilot clusters, you cannot
    // modify the default kube-dns configuration", GKE docs, kube-dns). The
    // kube-dns ConfigMap is ignored there and the DNS load balancer would
    // have no endpoints, so nothing we could write would work.
    let managed_outside = match managed_outside {
        Some(m) => m,
        None if detected.is_none() => {
            let services: Api<Service> = Api::namespaced(client.clone(), names::KUBE_SYSTEM);
            matches!(
                services.get_opt(names::CLUSTER_DNS_SERVICE).await,
                Ok(Some(_))
            )
        }
        None => false,
    };
    let missing = || {
        if managed_outside {
            return PreflightProblem::new(
                format!(
                    "Service kube-system/{} exists but no DNS Deployment with pods labelled {selector} serves it (found: {}): this cluster's DNS is managed outside the cluster, as on GKE Autopilot or GKE with Cloud DNS, which ignore the kube-dns ConfigMap and leave the DNS load balancer without endpoints",
                    names::CLUSTER_DNS_SERVICE,
                    if names_found.is_empty() {
                        "none".to_string()
                    } else {
                        names_found.join(", ")
                    }
                ),
                "crdb-multiregion forwards between clusters through kube-dns or CoreDNS in each cluster; use a GKE Standard cluster that runs kube-dns (created without --cluster-dns=clouddns), or set up cross-cluster names yourself in Cloud DNS and do not use this tool's DNS forwarding",
            );
        }
        PreflightProblem::new(
            format!(
                "no DNS Deployment with pods labelled {selector} in kube-system (found: {})",
                if names_found.is_empty() {
                    "none".to_string()
                } else {
                    names_found.join(", ")
                }
            ),
            "cross-cluster DNS needs kube-dns or CoreDNS running in kube-system",
        )
    };
    match (provider_override, detected) {
        (None, Some((provider, deployment))) => Ok(DnsServer {
            provider,
            deployment,
        }),
        (None, None) => Err(missing()),
        (Some(provider), _) => {
            let deployment = match provider {
                DnsProvider::KubeDns => kube_dns.or(coredns),
                DnsProvider::CoreDns | DnsProvider::CoreDnsCustom => coredns.or(kube_dns),
            };
            match deployment {
                Some(deployment) => Ok(DnsServer {
                    provider,
                    deployment,
                }),
                None => Err(missing()),
            }
        }
    }
}

/// The Corefile imports `coredns-custom`'s `*.server` keys at the top level
/// as k3s mounts them (`import /etc/coredns/custom/*.server`).
pub fn imports_custom_servers(corefile: &str) -> bool {
    corefile.lines().any(|line| {
        let line = line.split('#').next().unwrap_or_default();
        let mut words = line.split_whitespace();
        words.next() == Some("import")
            && words.next() == Some("/etc/coredns/custom/*.server")
            && words.next().is_none()
    })
}

#[cfg(test)]
mod tests {
    use super::imports_custom_servers;

    #[test]
    fn k3s_corefile_imports_custom_servers_and_the_standard_one_does_not() {
        let k3s = ".:53 {\n    forward . /etc/resolv.conf\n    import /etc/coredns/custom/*.override\n}\nimport /etc/coredns/custom/*.server\n";
        assert!(imports_custom_servers(k3s));
        let standard = ".:53 {\n    forward . /etc/resolv.conf\n}\n";
        assert!(!imports_custom_servers(standard));
        assert!(!imports_custom_servers(
            "# import /etc/coredns/custom/*.server\n"
        ));
        assert!(!imports_custom_servers(
            "import /etc/coredns/custom/*.override\n"
        ));
    }
}
