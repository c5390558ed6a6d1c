//! Talking to one zone's cluster: a connected zone (the client itself is
//! built in [`crate::connect`]), pre-flight checks bounded by their own
//! timeout, server-side apply of planned objects, bounded waits.
//!
//! Owns every Kubernetes API call the commands make (through kube-rs only:
//! no kubectl). Retries of transient errors (429/503/504) happen in one
//! place, kube's retry policy on the client; nothing here loops on errors.
//! A failed request is described by what it says about the server: not
//! reachable, answered with an error status, or still answering 429/503
//! when pre-flight's time ran out.
//! Knows nothing about the order of steps: `apply` and `teardown` decide that.

use std::fmt::Debug;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
    SelfSubjectRulesReview, SelfSubjectRulesReviewSpec,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::Kubeconfig;
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::Zone;
use crate::dns::DnsProvider;
use crate::known::{self, Known, Lookup};
use crate::names;
use crate::plan::Object;

/// Oldest Kubernetes minor version we support (policy/v1 PDBs, mixed-protocol
/// LoadBalancer Services).
pub const MIN_MINOR: u32 = 26;
/// Bounded waits look again after this long at first, then back off by half
/// each time up to [`POLL_MAX`]: quick to notice a fast change, gentle on
/// the API server during a long wait.
pub const POLL_FIRST: Duration = Duration::from_millis(50);
pub const POLL_MAX: Duration = Duration::from_millis(250);

pub use crate::connect::{ConnectError, KubeconfigError, LastSeen, load_kubeconfig};

/// How long pre-flight may take in one zone by default (`--preflight-timeout`):
/// a healthy API server answers in well under a second; one that keeps
/// answering 429/503 is reported with what it said instead of being retried
/// until the overall timeout.
pub const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(30);

/// A connected zone.
#[derive(Clone)]
pub struct Cluster {
    pub zone: String,
    pub context: String,
    /// The zone's namespace.
    pub namespace: String,
    pub client: Client,
    /// The API server URL of the context.
    pub server: String,
    /// What the API server last answered, over every attempt.
    pub seen: LastSeen,
    /// The objects read in pre-flight and written since, so that no step
    /// reads again what this run already knows (see [`crate::known`]).
    pub known: Known,
}

/// Builds the zone's client from its context (running its exec credential
/// plugin, if any, off the async threads). Makes no API call.
pub async fn connect(kubeconfig: &Kubeconfig, zone: &Zone) -> Result<Cluster, ConnectError> {
    let c = crate::connect::connect(kubeconfig, &zone.context).await?;
    Ok(Cluster {
        zone: zone.name.clone(),
        context: zone.context.clone(),
        namespace: zone.namespace.clone(),
        client: c.client,
        server: c.server,
        seen: c.seen,
        known: Known::new(&zone.namespace),
    })
}

impl Cluster {
    /// The object `namespace/name` (`""` for cluster-scoped) as this run
    /// already knows it, else read now (and remembered). `ours`: see
    /// [`Known::get`].
    pub async fn get_opt<K>(
        &self,
        namespace: &str,
        name: &str,
        ours: bool,
    ) -> Result<Option<K>, kube::Error>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug,
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    {
        if let Some(known) = self.known.get::<K>(namespace, name, ours) {
            return Ok(known);
        }
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        let found = api.get_opt(name).await?;
        self.known.read(namespace, name, found.as_ref());
        Ok(found)
    }

    /// Whether the zone namespace exists, as known or read now.
    pub async fn namespace_exists(&self) -> Result<bool, kube::Error> {
        if let Some(known) = self.known.get::<Namespace>("", &self.namespace, false) {
            return Ok(known.is_some());
        }
        let api: Api<Namespace> = Api::all(self.client.clone());
        let found = api.get_opt(&self.namespace).await?;
        self.known.read("", &self.namespace, found.as_ref());
        Ok(found.is_some())
    }

    /// The zone namespace as known or read now.
    pub async fn zone_namespace(&self) -> Result<Option<Namespace>, kube::Error> {
        if let Some(known) = self.known.get::<Namespace>("", &self.namespace, false) {
            return Ok(known);
        }
        let api: Api<Namespace> = Api::all(self.client.clone());
        let found = api.get_opt(&self.namespace).await?;
        self.known.read("", &self.namespace, found.as_ref());
        Ok(found)
    }

    /// Server-side apply of one planned object (see [`apply_object`]),
    /// without reading it first when this run already knows it, and without
    /// any request when it is known to be as planned already
    /// ([`known::converged`]).
    /// The zone namespace is annotated as created by us when it is (see
    /// [`Cluster::mark_if_created`]).
    pub async fn apply(&self, object: &Object, dry_run: bool) -> Result<Applied, ApplyError> {
        if matches!(object, Object::Namespace(_)) && object.name() == self.namespace {
            let marked = self.mark_if_created(object).await?;
            return apply_with(&self.client, &marked, dry_run, Some(&self.known)).await;
        }
        apply_with(&self.client, object, dry_run, Some(&self.known)).await
    }

    /// The planned namespace, annotated as created by us when it does not
    /// exist yet (or we created it before: by apply, or by `check` for its
    /// probes), so that teardown deletes only namespaces we created. A
    /// namespace that existed before is adopted without the annotation:
    /// teardown keeps it.
    async fn mark_if_created(&self, planned: &Object) -> Result<Object, ApplyError> {
        let existing = self.zone_namespace().await.map_err(|e| ApplyError::Api {
            object: planned.describe(),
            message: format!("reading it: {}", error_text(&e)),
        })?;
        let created = match &existing {
            None => true,
            Some(ns) => {
                let annotations = ns.metadata.annotations.clone().unwrap_or_default();
                let labels = ns.metadata.labels.clone().unwrap_or_default();
                annotations
                    .get(names::NAMESPACE_CREATED_ANNOTATION)
                    .is_some_and(|v| v == "true")
                    || labels
                        .get(crate::check::probe::PROBE_KEY)
                        .is_some_and(|v| v == "true")
            }
        };
        let mut object = planned.clone();
        if created && let Object::Namespace(ns) = &mut object {
            ns.metadata
                .annotations
                .get_or_insert_with(std::collections::BTreeMap::new)
                .insert(
                    names::NAMESPACE_CREATED_ANNOTATION.to_string(),
                    "true".to_string(),
                );
        }
        Ok(object)
    }
}

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

/// The addresses of the zone's DNS load balancer as they are now, its host
/// names resolved once (through `resolver`, else the system's): only
/// reads. Empty when the Service or its address does not exist (yet).
pub async fn dns_lb_addresses(
    cluster: &Cluster,
    resolver: Option<std::net::SocketAddr>,
) -> Result<Vec<std::net::IpAddr>, String> {
    let services: Api<Service> = Api::namespaced(cluster.client.clone(), names::KUBE_SYSTEM);
    let Some(svc) = services.get_opt(names::DNS_LB_SERVICE).await.map_err(|e| {
        format!(
            "reading Service {}/{}: {}",
            names::KUBE_SYSTEM,
            names::DNS_LB_SERVICE,
            error_text(&e)
        )
    })?
    else {
        return Ok(Vec::new());
    };
    let (mut ips, hosts) = crate::lb::ingress(&svc);
    for host in &hosts {
        ips.extend(
            crate::resolve::resolve_host(host, resolver)
                .await
                .map_err(|e| format!("{e} (hint: {})", e.hint()))?,
        );
    }
    ips.sort();
    ips.dedup();
    Ok(ips)
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

/// What applying one object did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Created,
    Configured,
    Unchanged,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(
        "{object} is also managed by another tool and server-side apply reports a conflict; crdb-multiregion does not force ownership: {message}"
    )]
    Conflict { object: String, message: String },
    #[error("{object}: {message}")]
    Api { object: String, message: String },
    /// 422: the API server refuses the object itself (an immutable field,
    /// a value out of range); retrying cannot help.
    #[error("{object}: {message}")]
    Invalid { object: String, message: String },
    /// The server refused the change of an existing object as invalid
    /// (422), e.g. a field Kubernetes does not allow to change; `live` is
    /// the object as it is, so the change can still be shown.
    #[error("{object}: {message}")]
    Refused {
        object: String,
        message: String,
        live: Box<Value>,
    },
}

/// Server-side apply of one planned object with our field manager (never
/// forced). `dry_run` asks the server to validate and compute the result
/// without storing it.
/// The outcome of applying one object.
#[derive(Debug, Clone)]
pub struct Applied {
    pub action: Action,
    pub before: Option<Value>,
    pub after: Value,
}

pub async fn apply_object(
    client: &Client,
    object: &Object,
    dry_run: bool,
) -> Result<Applied, ApplyError> {
    apply_with(client, object, dry_run, None).await
}

async fn apply_with(
    client: &Client,
    object: &Object,
    dry_run: bool,
    known: Option<&Known>,
) -> Result<Applied, ApplyError> {
    let ns = object.namespace();
    match object {
        Object::Namespace(o) => ssa(Api::all(client.clone()), o, object, dry_run, known).await,
        Object::Secret(o) => ssa(namespaced(client, ns), o, object, dry_run, known).await,
        Object::ConfigMap(o) => ssa(namespaced(client, ns), o, object, dry_run, known).await,
        Object::ServiceAccount(o) => ssa(namespaced(client, ns), o, object, dry_run, known).await,
        Object::Role(o) => ssa(namespaced(client, ns), o, object, dry_run, known).await,
        Object::RoleBinding(o) => ssa(namespaced(client, ns), o, object, dry_run, known).await,
        Object::Service(o) => ssa(namespaced(client, ns), o, object, dry_run, known).await,
        Object::PodDisruptionBudget(o) => {
            ssa(namespaced(client, ns), o, object, dry_run, known).await
        }
        Object::StatefulSet(o) => ssa(namespaced(client, ns), o, object, dry_run, known).await,
        Object::Job(o) => ssa(namespaced(client, ns), o, object, dry_run, known).await,
    }
}

fn namespaced<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as Resource>::DynamicType: Default,
{
    Api::namespaced(client.clone(), ns.unwrap_or(names::DEFAULT_NAMESPACE))
}

/// Whether the object a server-side apply returned was created by it: its
/// only field manager is our apply. An object that existed before has the
/// entry of whoever wrote it (or the API server's `before-first-apply`).
fn created_by_apply(after: &Value) -> bool {
    after["metadata"]["managedFields"]
        .as_array()
        .is_some_and(|entries| {
            entries
                .iter()
                .all(|e| e["manager"] == names::FIELD_MANAGER && e["operation"] == "Apply")
        })
}

/// Server-side apply of `object` (never forced). What it was before comes
/// from `known` when this run knows it, else from a GET; a real apply of an
/// object that may only lack our label needs no GET (it is created or
/// changed, never unchanged). An object known to be as planned is not
/// written at all.
async fn ssa<K>(
    api: Api<K>,
    typed: &K,
    object: &Object,
    dry_run: bool,
    known: Option<&Known>,
) -> Result<Applied, ApplyError>
where
    K: Clone + DeserializeOwned + Serialize + Debug + Resource,
{
    let name = object.name();
    let api_err = |e: kube::Error| match &e {
        kube::Error::Api(s) if s.code == 409 => ApplyError::Conflict {
            object: object.describe(),
            message: s.message.clone(),
        },
        kube::Error::Api(s) if s.code == 422 => ApplyError::Invalid {
            object: object.describe(),
            message: s.message.clone(),
        },
        _ => ApplyError::Api {
            object: object.describe(),
            message: error_text(&e),
        },
    };
    let lookup = known.map_or(Lookup::Unknown, |k| {
        k.lookup(object.kind(), object.namespace().unwrap_or_default(), name)
    });
    let mut params = PatchParams::apply(names::FIELD_MANAGER);
    if dry_run {
        params = params.dry_run();
    }
    let body = Patch::Apply(typed);
    let patch = || api.patch(name, &params, &body);
    let read = || async {
        api.get_opt(name)
            .await
            .map(|b| b.map(|b| serde_json::to_value(&b).unwrap_or(Value::Null)))
    };
    // `before` is `None` when what it was is not known, and a real apply
    // does not need it.
    let (before, result) = match lookup {
        Lookup::Present(live) => {
            if known::converged(&object.to_value(), &live) {
                return Ok(Applied {
                    action: Action::Unchanged,
                    before: Some(live.clone()),
                    after: live,
                });
            }
            (Some(Some(live)), patch().await)
        }
        Lookup::Absent => (Some(None), patch().await),
        Lookup::AbsentOrUnlabelled if !dry_run => (None, patch().await),
        // A dry run changes nothing: it may read at the same time.
        _ if dry_run => {
            let (before, result) = tokio::join!(read(), patch());
            (Some(before.map_err(api_err)?), result)
        }
        _ => (Some(read().await.map_err(api_err)?), patch().await),
    };
    let after = match result {
        Ok(after) => after,
        Err(kube::Error::Api(s)) if s.code == 422 && matches!(before, Some(Some(_))) => {
            return Err(ApplyError::Refused {
                object: object.describe(),
                message: s.message.clone(),
                live: Box::new(before.flatten().unwrap_or_default()),
            });
        }
        Err(e) => return Err(api_err(e)),
    };
    let after_value = serde_json::to_value(&after).unwrap_or(Value::Null);
    let version = |v: &Value| v["metadata"]["resourceVersion"].clone();
    let action = match &before {
        Some(None) => Action::Created,
        None if created_by_apply(&after_value) => Action::Created,
        None => Action::Configured,
        // A dry run stores nothing, so its answer keeps the version.
        Some(Some(b)) if dry_run && comparable(b) == comparable(&after_value) => Action::Unchanged,
        Some(Some(b)) if !dry_run && version(b) == version(&after_value) => Action::Unchanged,
        Some(Some(_)) => Action::Configured,
    };
    if !dry_run && let Some(k) = known {
        k.wrote(object.kind(), &after_value);
    }
    Ok(Applied {
        action,
        before: before.flatten(),
        after: after_value,
    })
}

/// An object without the fields the server maintains, for comparing content.
pub fn comparable(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in [
            "managedFields",
            "resourceVersion",
            "generation",
            "uid",
            "creationTimestamp",
        ] {
            meta.remove(k);
        }
    }
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    v
}

/// A kube error as one line, with the API's own message when there is one.
pub fn error_text(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({} {})", s.message, s.code, s.reason),
        other => crate::output::one_line(other),
    }
}

/// Polls `probe` until it returns `Ok(Some(T))`, or until `timeout`; on
/// timeout returns what it last saw (the `Ok(None)`-case description is
/// produced by `describe`). API errors end the wait at once (transient ones
/// were already retried by the client).
pub async fn wait_for<T, F, Fut>(timeout: Duration, mut probe: F) -> Result<T, WaitError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Result<T, String>, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut interval = POLL_FIRST;
    loop {
        let seen = match probe().await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(seen)) => seen,
            Err(e) => return Err(WaitError::Api(e)),
        };
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(WaitError::Timeout {
                after: timeout,
                last: seen,
            });
        }
        tokio::time::sleep(interval.min(deadline - now)).await;
        interval = (interval * 3 / 2).min(POLL_MAX);
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum WaitError {
    #[error("timed out after {}s; last seen: {last}", after.as_secs_f32())]
    Timeout { after: Duration, last: String },
    #[error("{0}")]
    Api(String),
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
