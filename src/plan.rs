//! The planner: config + certificates + facts learned from clusters -> a
//! [`Plan`], i.e. per zone an ordered list of typed Kubernetes objects and the
//! DNS forwarding that zone needs.
//!
//! Pure: no async, no client, no clock, no randomness, no file I/O (templates
//! are read before). Everything it produces is deterministic, so `plan` output
//! is stable and the same plan drives `apply`, `diff` and `teardown`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use minijinja::context;
use serde::Serialize;
use serde_json::{Value, json};

use crate::certs::{CertBundle, NodeCert};
use crate::config::{Cloud, Config, LoadBalancer, Protocol, Zone, quantity_bytes, shell_quote};
use crate::dns::{DnsProvider, Forward, ForwardOptions};
use crate::names;
use crate::render::{Document, RenderError, Templates, strict_typed};

#[cfg(test)]
mod pod_security;

/// What the I/O layer learned from the clusters; empty for an offline plan.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub zones: BTreeMap<String, ZoneFacts>,
}

#[derive(Debug, Clone, Default)]
pub struct ZoneFacts {
    /// Addresses of the zone's DNS load balancer (resolved to IPs).
    pub dns_addresses: Vec<IpAddr>,
    /// The DNS server the cluster runs, when detected.
    pub dns_provider: Option<DnsProvider>,
}

/// When an object is applied, in this order inside a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Namespace, Secrets, the join ConfigMap, RBAC, Services, PDB.
    Base,
    /// The DNS load balancer Service in kube-system.
    DnsLoadBalancer,
    /// The ExternalName Service in default and the StatefulSet.
    Workload,
    /// The one-time init Job (first zone only).
    Init,
}

/// A typed object we own.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Namespace(Namespace),
    Secret(Secret),
    ConfigMap(ConfigMap),
    ServiceAccount(ServiceAccount),
    Role(Role),
    RoleBinding(RoleBinding),
    Service(Service),
    PodDisruptionBudget(PodDisruptionBudget),
    StatefulSet(StatefulSet),
    Job(Job),
}

macro_rules! each_object {
    ($obj:expr, $o:ident => $body:expr) => {
        match $obj {
            Object::Namespace($o) => $body,
            Object::Secret($o) => $body,
            Object::ConfigMap($o) => $body,
            Object::ServiceAccount($o) => $body,
            Object::Role($o) => $body,
            Object::RoleBinding($o) => $body,
            Object::Service($o) => $body,
            Object::PodDisruptionBudget($o) => $body,
            Object::StatefulSet($o) => $body,
            Object::Job($o) => $body,
        }
    };
}

fn api_version_kind<K: k8s_openapi::Resource>(_: &K) -> (&'static str, &'static str) {
    (K::API_VERSION, K::KIND)
}

impl Object {
    pub fn kind(&self) -> &'static str {
        each_object!(self, o => api_version_kind(o).1)
    }
    pub fn api_version(&self) -> &'static str {
        each_object!(self, o => api_version_kind(o).0)
    }
    pub fn metadata(&self) -> &ObjectMeta {
        each_object!(self, o => &o.metadata)
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        each_object!(self, o => &mut o.metadata)
    }
    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or_default()
    }
    pub fn namespace(&self) -> Option<&str> {
        self.metadata().namespace.as_deref()
    }
    /// The object as JSON, with apiVersion and kind.
    pub fn to_value(&self) -> Value {
        each_object!(self, o => serde_json::to_value(o).unwrap_or(Value::Null))
    }
    /// `Kind namespace/name` or `Kind name`, for messages.
    pub fn describe(&self) -> String {
        match self.namespace() {
            Some(ns) => format!("{} {ns}/{}", self.kind(), self.name()),
            None => format!("{} {}", self.kind(), self.name()),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub stage: Stage,
    pub object: Object,
}

/// How the DNS provider of a zone was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderSource {
    /// Set in the config.
    Configured,
    /// Detected in the cluster.
    Detected,
    /// `auto` without a cluster to ask: the usual one for the configured cloud.
    Assumed,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DnsStatus {
    /// Forwarding for every other zone is known.
    Ready(Vec<Forward>),
    /// Some other zones' DNS load balancer addresses are not known yet.
    Pending { missing: Vec<String> },
    /// A single zone forwards nothing.
    NotNeeded,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DnsPlan {
    pub provider: DnsProvider,
    pub provider_source: ProviderSource,
    pub options: ForwardOptions,
    pub status: DnsStatus,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ZonePlan {
    pub zone: String,
    pub context: String,
    pub namespace: String,
    pub objects: Vec<Planned>,
    pub dns: DnsPlan,
}

impl ZonePlan {
    pub fn stage(&self, stage: Stage) -> impl Iterator<Item = &Object> {
        self.objects
            .iter()
            .filter(move |p| p.stage == stage)
            .map(|p| &p.object)
    }
}

/// Per zone, in config order (the first zone runs the init Job).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub zones: Vec<ZonePlan>,
}

impl Plan {
    pub fn zone(&self, name: &str) -> Option<&ZonePlan> {
        self.zones.iter().find(|z| z.zone == name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("zone {zone}: no certificate for this zone in the certificate bundle")]
    MissingCert { zone: String },
    #[error("zone {zone}")]
    Render {
        zone: String,
        #[source]
        source: RenderError,
    },
    #[error("zone {zone}: template {template} line {line}: {message}")]
    Shape {
        zone: String,
        template: String,
        line: usize,
        message: String,
    },
}

/// The labels on every object we own.
pub fn owned_labels(config: &Config, zone: &Zone) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            names::MANAGED_BY_KEY.to_string(),
            names::MANAGED_BY.to_string(),
        ),
        (names::FEDERATION_KEY.to_string(), config.federation.clone()),
        (names::ZONE_KEY.to_string(), zone.name.clone()),
    ])
}

/// Label selector matching everything of this federation we own in a cluster.
pub fn owned_selector(config: &Config) -> String {
    format!(
        "{}={},{}={}",
        names::MANAGED_BY_KEY,
        names::MANAGED_BY,
        names::FEDERATION_KEY,
        config.federation
    )
}

/// `cockroachdb-<i>.cockroachdb.<ns>` for every zone and ordinal.
pub fn join_list(config: &Config) -> Vec<String> {
    config
        .zones
        .iter()
        .flat_map(|z| (0..z.replicas).map(|i| names::pod_host(i, &z.namespace)))
        .collect()
}

/// The annotations the DNS load balancer needs for the configured cloud and
/// LB type, then the user's own (which win).
pub fn dns_lb_annotations(config: &Config) -> BTreeMap<String, String> {
    let mut a: BTreeMap<String, String> = BTreeMap::new();
    let mut set = |k: &str, v: &str| {
        a.insert(k.to_string(), v.to_string());
    };
    match (config.dns.cloud, config.dns.load_balancer) {
        (Cloud::Gke, LoadBalancer::Internal) => {
            set("networking.gke.io/load-balancer-type", "Internal");
            set(
                "networking.gke.io/internal-load-balancer-allow-global-access",
                "true",
            );
        }
        (Cloud::Eks, lb) => {
            set("service.beta.kubernetes.io/aws-load-balancer-type", "nlb");
            if lb == LoadBalancer::Internal {
                set(
                    "service.beta.kubernetes.io/aws-load-balancer-scheme",
                    "internal",
                );
                set(
                    "service.beta.kubernetes.io/aws-load-balancer-internal",
                    "true",
                );
            } else {
                set(
                    "service.beta.kubernetes.io/aws-load-balancer-scheme",
                    "internet-facing",
                );
            }
        }
        (Cloud::Aks, LoadBalancer::Internal) => {
            set(
                "service.beta.kubernetes.io/azure-load-balancer-internal",
                "true",
            );
        }
        _ => {}
    }
    for (k, v) in &config.dns.annotations {
        a.insert(k.clone(), v.clone());
    }
    a
}

/// The DNS server a cloud usually runs, for planning without a cluster.
pub fn assumed_provider(cloud: Cloud) -> DnsProvider {
    match cloud {
        Cloud::Gke => DnsProvider::KubeDns,
        Cloud::Aks => DnsProvider::CoreDnsCustom,
        Cloud::Eks | Cloud::Generic => DnsProvider::CoreDns,
    }
}

/// `--cache` and `--max-sql-memory`: a quarter of the memory limit each, in
/// MiB, as CockroachDB's own manifests size them
/// (`$(expr $MEMORY_LIMIT_MIB / 4)MiB`). The limit always exists (config
/// defaults), so the caches never size themselves from the node's memory.
pub fn memory_flags(config: &Config) -> (String, String) {
    let limit = quantity_bytes(&config.cockroachdb.memory_limit).unwrap_or(0);
    let share = format!(
        "{}MiB",
        limit / names::CACHE_FRACTION_DENOMINATOR / (1 << 20)
    );
    (share.clone(), share)
}

/// Container resources: requests and limits of CPU and memory.
fn resources(config: &Config) -> Value {
    let c = &config.cockroachdb;
    json!({
        "requests": { "cpu": c.cpu_request, "memory": c.memory_request },
        "limits": { "cpu": c.cpu_limit, "memory": c.memory_limit },
    })
}

/// The shell command the CockroachDB container runs (under `bash -ec`).
/// Every value from the config is shell-quoted; `$(hostname -f)` and the
/// join list are the only expansions, and they are quoted too. The join list
/// is not in the command: the container reads it at start from the
/// environment variable [`names::JOIN_ENV`], set from the zone's
/// [`names::JOIN_CONFIGMAP`], so adding a zone or changing another zone's
/// replicas leaves this zone's pod template (and its running pods) alone.
/// An empty or unset variable stops the container with a message naming the
/// ConfigMap, rather than starting a node that joins nothing.
pub fn start_command(config: &Config, zone: &Zone) -> String {
    let (cache, max_sql) = memory_flags(config);
    let q = shell_quote;
    format!(
        "exec /cockroach/cockroach start --logtostderr --certs-dir {certs} --advertise-host \"$(hostname -f)\" --http-addr 0.0.0.0 --join \"${{{env}:?is empty or unset: the ConfigMap {cm} (key {key}) holds the join list}}\" --locality {locality} --cache {cache} --max-sql-memory {max_sql}",
        certs = q(names::NODE_CERTS_MOUNT),
        env = names::JOIN_ENV,
        cm = names::JOIN_CONFIGMAP,
        key = names::JOIN_KEY,
        locality = q(&zone.locality()),
        cache = q(&cache),
        max_sql = q(&max_sql),
    )
}

/// The DNS plan of one zone: forwarding for every OTHER zone (never its own,
/// which would loop).
fn dns_plan(config: &Config, zone: &Zone, facts: &Facts) -> DnsPlan {
    let detected = facts.zones.get(&zone.name).and_then(|f| f.dns_provider);
    let (provider, provider_source) = match (config.dns.provider.provider(), detected) {
        (Some(p), _) => (p, ProviderSource::Configured),
        (None, Some(p)) => (p, ProviderSource::Detected),
        (None, None) => (assumed_provider(config.dns.cloud), ProviderSource::Assumed),
    };
    let options = ForwardOptions {
        force_tcp: config.dns.protocols == [Protocol::Tcp],
        ..ForwardOptions::default()
    };
    let others: Vec<&Zone> = config
        .zones
        .iter()
        .filter(|z| z.name != zone.name)
        .collect();
    let status = if others.is_empty() {
        DnsStatus::NotNeeded
    } else {
        let mut forwards = Vec::new();
        let mut missing = Vec::new();
        for other in others {
            match facts.zones.get(&other.name) {
                Some(f) if !f.dns_addresses.is_empty() => forwards.push(Forward {
                    domain: names::zone_domain(&other.namespace, &config.cluster_domain),
                    servers: f.dns_addresses.clone(),
                }),
                _ => missing.push(other.name.clone()),
            }
        }
        if missing.is_empty() {
            DnsStatus::Ready(forwards)
        } else {
            DnsStatus::Pending { missing }
        }
    };
    DnsPlan {
        provider,
        provider_source,
        options,
        status,
    }
}

/// The zone's join ConfigMap: the cross-cluster join list (every replica of
/// every zone, as the original setup.py computes it), read by the container
/// at start.
pub fn join_configmap(config: &Config, zone: &Zone, labels: &BTreeMap<String, String>) -> Object {
    Object::ConfigMap(ConfigMap {
        metadata: ObjectMeta {
            name: Some(names::JOIN_CONFIGMAP.to_string()),
            namespace: Some(zone.namespace.clone()),
            labels: Some(labels.clone()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            names::JOIN_KEY.to_string(),
            join_list(config).join(","),
        )])),
        ..ConfigMap::default()
    })
}

fn secret(
    name: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    data: &[(&str, &str)],
) -> Object {
    Object::Secret(Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(labels.clone()),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_string()),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    })
}

/// Turns a rendered document into a typed object of a kind we manage.
fn typed(doc: &Document) -> Result<Object, RenderError> {
    let api = doc
        .value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = doc.value.get("kind").and_then(Value::as_str).unwrap_or("");
    Ok(match (api, kind) {
        ("v1", "Namespace") => Object::Namespace(strict_typed(doc, kind)?),
        ("v1", "Secret") => Object::Secret(strict_typed(doc, kind)?),
        ("v1", "ConfigMap") => Object::ConfigMap(strict_typed(doc, kind)?),
        ("v1", "ServiceAccount") => Object::ServiceAccount(strict_typed(doc, kind)?),
        ("v1", "Service") => Object::Service(strict_typed(doc, kind)?),
        ("rbac.authorization.k8s.io/v1", "Role") => Object::Role(strict_typed(doc, kind)?),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
            Object::RoleBinding(strict_typed(doc, kind)?)
        }
        ("policy/v1", "PodDisruptionBudget") => {
            Object::PodDisruptionBudget(strict_typed(doc, kind)?)
        }
        ("apps/v1", "StatefulSet") => Object::StatefulSet(strict_typed(doc, kind)?),
        ("batch/v1", "Job") => Object::Job(strict_typed(doc, kind)?),
        _ => {
            return Err(RenderError::Invalid {
                name: doc.template.clone(),
                line: doc.line,
                kind: format!("{api} {kind}").trim().to_string(),
                message: "unsupported apiVersion/kind; templates may produce Namespace, Secret, ConfigMap, ServiceAccount, Service, Role, RoleBinding (rbac.authorization.k8s.io/v1), PodDisruptionBudget (policy/v1), StatefulSet (apps/v1) and Job (batch/v1)".to_string(),
            });
        }
    })
}

/// Builds the plan. Pure and deterministic.
fn node_cert<'a>(certs: &'a CertBundle, zone: &Zone) -> Result<&'a NodeCert, PlanError> {
    certs
        .nodes
        .get(&zone.name)
        .ok_or_else(|| PlanError::MissingCert {
            zone: zone.name.clone(),
        })
}

/// The Secrets of a zone's certificates: the root client's in the zone
/// namespace and in `default`, the node's in the zone namespace.
fn zone_secrets(
    zone: &Zone,
    labels: &BTreeMap<String, String>,
    certs: &CertBundle,
    node: &NodeCert,
) -> [Object; 3] {
    let client: [(&str, &str); 3] = [
        ("ca.crt", &certs.ca_crt),
        ("client.root.crt", &certs.client_root_crt),
        ("client.root.key", &certs.client_root_key),
    ];
    [
        secret(names::CLIENT_SECRET, &zone.namespace, labels, &client),
        secret(
            names::CLIENT_SECRET,
            names::DEFAULT_NAMESPACE,
            labels,
            &client,
        ),
        secret(
            names::NODE_SECRET,
            &zone.namespace,
            labels,
            &[
                ("ca.crt", &certs.ca_crt),
                ("node.crt", &node.crt),
                ("node.key", &node.key),
            ],
        ),
    ]
}

/// Puts `certs` into the Secrets of a plan made with other certificates,
/// leaving every other object as it is: the certificates are in nothing
/// else, so apply renders the templates once, before the certificates are
/// made (a broken template then stops it before anything is written), and
/// swaps them in after.
pub fn replace_certs(
    plan: &mut Plan,
    config: &Config,
    certs: &CertBundle,
) -> Result<(), PlanError> {
    for zone_plan in &mut plan.zones {
        let Some(zone) = config.zones.iter().find(|z| z.name == zone_plan.zone) else {
            continue;
        };
        let node = node_cert(certs, zone)?;
        let labels = owned_labels(config, zone);
        for new in zone_secrets(zone, &labels, certs, node) {
            if let Some(slot) = zone_plan.objects.iter_mut().find(|p| {
                matches!(p.object, Object::Secret(_))
                    && p.object.name() == new.name()
                    && p.object.namespace() == new.namespace()
            }) {
                slot.object = new;
            }
        }
    }
    Ok(())
}

/// Sets every zone's DNS forwarding from `facts`, leaving the objects as
/// they are: of the facts, only the DNS forwarding depends on them, so a
/// plan made before the load balancers had addresses needs nothing else
/// once they have (rendering every object again costs far more).
pub fn refresh_dns(plan: &mut Plan, config: &Config, facts: &Facts) {
    for zone_plan in &mut plan.zones {
        if let Some(zone) = config.zones.iter().find(|z| z.name == zone_plan.zone) {
            zone_plan.dns = dns_plan(config, zone, facts);
        }
    }
}

pub fn plan(
    config: &Config,
    certs: &CertBundle,
    facts: &Facts,
    templates: &Templates,
) -> Result<Plan, PlanError> {
    let join = join_list(config).join(",");
    let annotations = dns_lb_annotations(config);
    let protocols: Vec<&str> = config.dns.protocols.iter().map(|p| p.as_str()).collect();
    let dns = context! { annotations => &annotations, protocols => &protocols };
    let shared = Shared {
        config,
        certs,
        facts,
        templates,
        join: &join,
        dns: &dns,
    };
    // Zones are independent: planned on every core (rendering and parsing
    // the templates is most of `plan`'s CPU time at a hundred zones), in
    // contiguous runs, then put back in config order; the first error in
    // config order is the one returned, as when planned one by one.
    let zones: Vec<(usize, &Zone)> = config.zones.iter().enumerate().collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = zones.len().div_ceil(threads).max(1);
    let planned: Vec<Result<Vec<ZonePlan>, PlanError>> = std::thread::scope(|scope| {
        let workers: Vec<_> = zones
            .chunks(chunk)
            .map(|part| {
                let shared = &shared;
                scope.spawn(move || {
                    part.iter()
                        .map(|(index, zone)| plan_zone(shared, *index, zone))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut zones = Vec::with_capacity(config.zones.len());
    for part in planned {
        zones.extend(part?);
    }
    Ok(Plan { zones })
}

/// What every zone's plan reads.
struct Shared<'a> {
    config: &'a Config,
    certs: &'a CertBundle,
    facts: &'a Facts,
    templates: &'a Templates,
    join: &'a str,
    /// The template context's `dns`: the load balancer's annotations and protocols.
    dns: &'a minijinja::Value,
}

/// The plan of one zone (`index` in config order: the first runs the init Job).
fn plan_zone(shared: &Shared<'_>, index: usize, zone: &Zone) -> Result<ZonePlan, PlanError> {
    let Shared {
        config,
        certs,
        facts,
        templates,
        join,
        dns,
    } = *shared;
    let node = node_cert(certs, zone)?;
    let labels = owned_labels(config, zone);
    let mut app_labels = labels.clone();
    app_labels.insert(names::APP_KEY.to_string(), names::APP.to_string());
    let (cache, max_sql_memory) = memory_flags(config);
    let ctx = context! {
        zone => &zone.name,
        namespace => &zone.namespace,
        region => &zone.region,
        replicas => zone.replicas,
        locality => zone.locality(),
        join => join,
        cluster_domain => &config.cluster_domain,
        federation => &config.federation,
        labels => &labels,
        app_labels => &app_labels,
        selector => BTreeMap::from([(names::APP_KEY, names::APP)]),
        image => &config.cockroachdb.image,
        storage => &config.cockroachdb.storage,
        storage_class => &config.cockroachdb.storage_class,
        resources => minijinja::value::Serde(resources(config)),
        cache => cache,
        max_sql_memory => max_sql_memory,
        start_command => start_command(config, zone),
        public_fqdn => format!("{}.{}.svc.{}", names::PUBLIC_SERVICE, zone.namespace, config.cluster_domain),
        init_host => format!("{}-0.{}", names::STATEFULSET, names::HEADLESS_SERVICE),
        ports => context! { grpc => names::GRPC_PORT, http => names::HTTP_PORT },
        dns => dns.clone(),
        names => context! {
            statefulset => names::STATEFULSET,
            headless_service => names::HEADLESS_SERVICE,
            public_service => names::PUBLIC_SERVICE,
            pdb => names::PDB,
            service_account => names::SERVICE_ACCOUNT,
            init_job => names::INIT_JOB,
            node_secret => names::NODE_SECRET,
            client_secret => names::CLIENT_SECRET,
            dns_lb => names::DNS_LB_SERVICE,
            node_certs_mount => names::NODE_CERTS_MOUNT,
            client_certs_mount => names::CLIENT_CERTS_MOUNT,
            join_configmap => names::JOIN_CONFIGMAP,
            join_key => names::JOIN_KEY,
            join_env => names::JOIN_ENV,
        },
    };

    let mut objects = Vec::new();
    let render = |name: &str| -> Result<Vec<(Document, Object)>, PlanError> {
        let docs = templates
            .render(name, &ctx)
            .map_err(|source| PlanError::Render {
                zone: zone.name.clone(),
                source,
            })?;
        docs.into_iter()
            .map(|d| {
                let o = typed(&d).map_err(|source| PlanError::Render {
                    zone: zone.name.clone(),
                    source,
                })?;
                Ok((d, o))
            })
            .collect()
    };
    let push = |objects: &mut Vec<Planned>,
                stage: Stage,
                items: Vec<(Document, Object)>|
     -> Result<(), PlanError> {
        for (doc, mut object) in items {
            check_shape(zone, stage, &doc, &object)?;
            // Teardown finds what we own by these labels: a user template
            // that drops them must not make objects invisible to it.
            let meta = object.metadata_mut();
            let l = meta.labels.get_or_insert_with(BTreeMap::new);
            for (k, v) in &labels {
                l.insert(k.clone(), v.clone());
            }
            objects.push(Planned { stage, object });
        }
        Ok(())
    };

    push(&mut objects, Stage::Base, render("namespace.yaml")?)?;
    for object in zone_secrets(zone, &labels, certs, node) {
        objects.push(Planned {
            stage: Stage::Base,
            object,
        });
    }
    // Before the StatefulSet (Base precedes Workload): a pod that starts
    // finds the list it reads.
    objects.push(Planned {
        stage: Stage::Base,
        object: join_configmap(config, zone, &labels),
    });
    push(&mut objects, Stage::Base, render("rbac.yaml")?)?;
    push(&mut objects, Stage::Base, render("services.yaml")?)?;
    push(&mut objects, Stage::Base, render("pdb.yaml")?)?;
    push(&mut objects, Stage::DnsLoadBalancer, render("dns-lb.yaml")?)?;
    push(&mut objects, Stage::Workload, render("external-name.yaml")?)?;
    push(&mut objects, Stage::Workload, render("statefulset.yaml")?)?;
    if index == 0 {
        push(&mut objects, Stage::Init, render("init-job.yaml")?)?;
    }

    Ok(ZonePlan {
        zone: zone.name.clone(),
        context: zone.context.clone(),
        namespace: zone.namespace.clone(),
        objects,
        dns: dns_plan(config, zone, facts),
    })
}

/// Rejects rendered objects that would land somewhere we would not clean up.
fn check_shape(
    zone: &Zone,
    stage: Stage,
    doc: &Document,
    object: &Object,
) -> Result<(), PlanError> {
    let fail = |message: String| PlanError::Shape {
        zone: zone.name.clone(),
        template: doc.template.clone(),
        line: doc.line,
        message,
    };
    if object.name().is_empty() {
        return Err(fail(format!("{} has no metadata.name", object.kind())));
    }
    if let Object::StatefulSet(sts) = object
        && let Some(container) = missing_join_env(sts)
    {
        return Err(fail(format!(
            "container {container:?} of StatefulSet {} starts with the join list from ${}, but has no env entry {} from ConfigMap {} (key {}): every pod would fail to start. The template predates the join ConfigMap; copy the `{}` env entry from the built-in templates/statefulset.yaml (docs/operations.md)",
            object.name(),
            names::JOIN_ENV,
            names::JOIN_ENV,
            names::JOIN_CONFIGMAP,
            names::JOIN_KEY,
            names::JOIN_ENV,
        )));
    }
    let allowed: &[&str] = match (stage, object) {
        (_, Object::Namespace(_)) => &[],
        (Stage::DnsLoadBalancer, _) => &[names::KUBE_SYSTEM],
        (Stage::Workload, Object::Service(_)) => &[names::DEFAULT_NAMESPACE],
        _ => &[],
    };
    match (object, object.namespace()) {
        (Object::Namespace(_), Some(_)) => {
            Err(fail("a Namespace has no metadata.namespace".into()))
        }
        (Object::Namespace(_), None) => Ok(()),
        (_, None) => Err(fail(format!(
            "{} {} needs metadata.namespace",
            object.kind(),
            object.name()
        ))),
        (_, Some(ns)) if ns == zone.namespace || allowed.contains(&ns) => Ok(()),
        (_, Some(ns)) => Err(fail(format!(
            "{} is in namespace {ns:?}; objects of zone {} belong in {:?}{}",
            object.describe(),
            zone.name,
            zone.namespace,
            if allowed.is_empty() {
                String::new()
            } else {
                format!(" or {:?}", allowed.join(", "))
            }
        ))),
    }
}

/// The first container whose command reads [`names::JOIN_ENV`] without an
/// env entry setting it from the join ConfigMap (a StatefulSet template
/// copied before the join list moved there).
fn missing_join_env(sts: &k8s_openapi::api::apps::v1::StatefulSet) -> Option<String> {
    let pod = sts.spec.as_ref()?.template.spec.as_ref()?;
    pod.containers.iter().find_map(|c| {
        let words = c.command.iter().flatten().chain(c.args.iter().flatten());
        let reads = words.into_iter().any(|w| w.contains(names::JOIN_ENV));
        let set = c.env.iter().flatten().any(|e| {
            e.name == names::JOIN_ENV
                && e.value_from
                    .as_ref()
                    .and_then(|v| v.config_map_key_ref.as_ref())
                    .is_some_and(|r| r.name == names::JOIN_CONFIGMAP && r.key == names::JOIN_KEY)
        });
        (reads && !set).then(|| c.name.clone())
    })
}

#[cfg(test)]
mod tests;
