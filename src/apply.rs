//! `apply`: converge every zone's cluster to the plan.
//!
//! Concurrent across zones, ordered inside a zone:
//!
//! ```text
//! connect + pre-flight (all zones; any failure stops before changes)
//!   -> another federation's shared objects in a cluster, or zones removed
//!      from the config without --prune: refuse, before any change
//!   -> certificates (local)
//!   -> phase A per zone: namespace (annotated when we create it), secrets,
//!      RBAC, services, PDB, DNS LB Service; wait for the LB address
//!      (resolve hostnames)
//!   -> barrier: every zone's DNS address is now known -> re-plan with it
//!   -> phase B per zone: merge DNS forwarding, rollout restart of DNS until
//!      its pods were restarted for that forwarding (recorded on the pod
//!      template), ExternalName Service, StatefulSet, wait for pods; init Job
//!      in the first zone if the cluster is not initialised
//! ```
//!
//! One zone's failure after pre-flight fails that zone only; the others
//! finish their step and the report names it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::certs::CertBundle;
use crate::config::Config;
use crate::decommission;
use crate::dns::DnsProvider;
use crate::k8s::dns_configmap::{self, DnsChange};
use crate::k8s::events;
use crate::k8s::lb;
use crate::k8s::{
    self, Action, Cluster, ClusterInfo, PreflightProblem, WaitError, error_text, wait_for,
};
use crate::names;
use crate::plan::{self, DnsStatus, Facts, Object, Stage, ZoneFacts, ZonePlan};
use crate::progress::Progress;
use crate::render::Templates;
use crate::resolve;

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub dry_run: bool,
    pub prune: bool,
    /// Bound of each wait (LB address, DNS rollout, pods, init Job).
    pub wait_timeout: Duration,
    /// Zones worked on at the same time.
    pub concurrency: usize,
    /// DNS server for LB hostnames (default: the system's).
    pub resolver: Option<SocketAddr>,
    /// Start a rolling change even when the federation is not healthy now.
    pub allow_unhealthy: bool,
    /// Roll zones one at a time, each after the previous one's rollout is
    /// complete and CockroachDB reports no under-replicated and no
    /// unavailable ranges. Off only in tests ([`UNGATED_ENV`]).
    pub gated: bool,
    /// `--zone`: the DNS load balancer addresses of the zones that are not
    /// applied, read from their clusters; the applied zones' forwarding
    /// needs them. Empty when every zone is applied.
    pub other_zones: BTreeMap<String, Vec<IpAddr>>,
}

/// Test-only switch (an environment variable, not a flag): when set, zones
/// whose StatefulSet changes are rolled all at once, without the health
/// gate and the health check before it, as apply did before rolling changes
/// were gated. It exists so that a test can show the availability measure
/// fails without the gate. Never set it on real clusters.
pub const UNGATED_ENV: &str = "CRDB_MULTIREGION_TEST_UNGATED_ROLLOUT";

#[derive(Debug, Clone, Serialize)]
pub struct ObjectReport {
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    pub action: Action,
    /// Changed fields with old and new values (Secrets' data masked), for
    /// `configured` objects.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<crate::diff::FieldChange>,
    /// What the change does beyond storing it (see [`crate::diff::consequences`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The unified YAML diff of a `configured` object, for text output.
    #[serde(skip)]
    pub diff: String,
}

impl ObjectReport {
    /// What an object is, then what applying it did or would do: fields,
    /// consequences and the text diff, from the object as it was and as the
    /// server (or, for a refused change, [`crate::diff::overlay`]) says it is after.
    pub fn new(zone: &str, object: &Object, action: Action, before: &Value, after: &Value) -> Self {
        let mut report = ObjectReport {
            kind: object.kind().to_string(),
            namespace: object.namespace().map(str::to_string),
            name: object.name().to_string(),
            action,
            fields: Vec::new(),
            warnings: Vec::new(),
            diff: String::new(),
        };
        if action == Action::Configured {
            let (b, a) = crate::diff::prepare(object.kind(), before, after);
            let label = format!("{zone}: {}", object.describe());
            report.fields = crate::diff::field_changes(&b, &a);
            report.warnings = crate::diff::consequences(zone, object.kind(), &b, &a);
            report.diff = crate::diff::unified(
                &b,
                &a,
                &format!("{label} (live)"),
                &format!("{label} (after apply)"),
            );
        }
        report
    }

    /// `Kind namespace/name`, or `Kind name` for a cluster-scoped object.
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StepTime {
    pub step: String,
    pub seconds: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ZoneReport {
    pub zone: String,
    pub context: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterInfo>,
    pub objects: Vec<ObjectReport>,
    pub dns_addresses: Vec<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsChange>,
    /// DNS was restarted (in a dry run: would be), because its pods were
    /// last restarted for other forwarding than the ConfigMap holds.
    pub dns_restarted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<String>,
    /// Things that worked but may not stay so (e.g. a DNS ConfigMap a
    /// cloud add-on re-applies).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub steps: Vec<StepTime>,
    /// Time spent on this zone (its phases, a failed step included; not
    /// the waits for the other zones or for a --concurrency slot).
    pub seconds: f64,
}

impl ZoneReport {
    /// Whether this zone needed no change at all.
    pub fn unchanged(&self) -> bool {
        self.objects.iter().all(|o| o.action == Action::Unchanged)
            && matches!(self.dns, None | Some(DnsChange::Unchanged))
            && !self.dns_restarted
            && self
                .init
                .as_deref()
                .is_none_or(|i| !(i.starts_with("initialised") || i.starts_with("would")))
    }
}

/// Version of the `apply -o json` / `diff -o json` format
/// (docs/apply-report.schema.json).
pub const REPORT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    /// [`REPORT_VERSION`].
    pub version: u32,
    pub dry_run: bool,
    pub ok: bool,
    pub changed: bool,
    pub zones: Vec<ZoneReport>,
    pub elapsed_seconds: f64,
}

/// Why apply stopped before changing anything.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Preflight(PreflightFailures),
    #[error(
        "zone(s) {} are no longer in the config but the clusters still forward their DNS names ({}); re-run with --prune to decommission their CockroachDB nodes and remove them from DNS forwarding and join lists (their own clusters are not touched: run teardown with the old config for that)",
        .zones.join(", "), .domains.join(", ")
    )]
    RemovedZones {
        zones: Vec<String>,
        domains: Vec<String>,
    },
    #[error(
        "the clusters hold another CA than the local one ({local}):{}\nWriting the Secrets would replace the CA of a running federation and break TLS between its nodes. If the clusters' CA is yours, point certs.dir and certs.ca_key at it (relative paths resolve against the config file's directory); to replace it deliberately, re-run with --replace-ca (see docs/apply.md)",
        list_foreign_cas(.found)
    )]
    ForeignCa {
        /// "<certs dir>/ca.crt, SHA-256 AB:..." or that there is none yet.
        local: String,
        /// (zone, namespace/secret, SHA-256 fingerprint of its ca.crt).
        found: Vec<(String, String, String)>,
    },
    #[error(
        "the federation is not healthy now, so the rolling change of {} was not started (nothing was changed):{}\nA rolling change restarts the CockroachDB nodes of one zone after another and relies on every other zone being healthy meanwhile. Wait until the problems above are gone and apply again, or re-run with --allow-unhealthy to roll anyway (see docs/operations.md)",
        .rolling.join(", "), list_lines(.problems)
    )]
    Unhealthy {
        /// Zones whose StatefulSet would roll.
        rolling: Vec<String>,
        problems: Vec<String>,
    },
    #[error(
        "the API servers would refuse {} of the planned changes (server-side dry run), so nothing was changed:{}",
        .0.len(), list_lines(.0)
    )]
    WouldBeRefused(Vec<String>),
    #[error(
        "the federation would keep {nodes} CockroachDB node(s) after {}, fewer than CockroachDB's replication factor {}: every range keeps 3 replicas on 3 different nodes, and `cockroach node decommission` refuses to go below that. Nothing was changed\n      hint: keep at least {} replicas over all zones (the `replicas` of every [[zones]] entry add up), or add a zone first",
        .leaving.join(", "), decommission::MIN_NODES, decommission::MIN_NODES
    )]
    TooFewNodes { nodes: u32, leaving: Vec<String> },
    #[error("could not read the existing Secrets to compare their CA with the local one:{}", list_read_failures(.0))]
    CaUnreadable(Vec<(String, String)>),
    #[error(
        "the clusters already hold another crdb-multiregion federation's objects that federation {federation:?} would share:{}\ntwo federations cannot share a cluster: the DNS load balancer kube-system/{}, the DNS forwarding and the objects in namespace `default` exist once per cluster (see \"federation\" in docs/configuration.md). Use other clusters, or tear the other federation down first (teardown with its own config). Nothing was changed",
        list_foreign(.found), names::DNS_LB_SERVICE
    )]
    OtherFederation {
        federation: String,
        /// (zone, context, what was found)
        found: Vec<(String, String, String)>,
    },
}

fn list_foreign(found: &[(String, String, String)]) -> String {
    found
        .iter()
        .map(|(zone, context, what)| format!("\n  {zone} (context {context}): {what}"))
        .collect()
}

fn list_lines(lines: &[String]) -> String {
    lines.iter().map(|l| format!("\n  {l}")).collect()
}

fn list_foreign_cas(found: &[(String, String, String)]) -> String {
    found
        .iter()
        .map(|(zone, secret, fp)| format!("\n  {zone}: Secret {secret} has CA SHA-256 {fp}"))
        .collect()
}

fn list_read_failures(failures: &[(String, String)]) -> String {
    failures
        .iter()
        .map(|(zone, e)| format!("\n  {zone}: {e}"))
        .collect()
}

/// Refuses (before anything is written, locally or in a cluster) when a
/// cluster's existing Secrets hold a CA other than `local_ca_pem`, unless
/// `replace`. `local_exists` says whether that CA is on disk (or would be
/// new), for the message.
pub async fn check_ca(
    clusters: &[(Cluster, ClusterInfo)],
    local_ca_pem: &str,
    local_description: &str,
    replace: bool,
    progress: Progress,
) -> Result<(), ApplyError> {
    use k8s_openapi::api::core::v1::Secret;
    let local = crate::certs::fingerprint(local_ca_pem).unwrap_or_default();
    let local = local.as_str();
    let reads = clusters.iter().map(|(c, _)| async move {
        let mut found = Vec::new();
        for (ns, name) in [
            (c.namespace.as_str(), names::NODE_SECRET),
            (c.namespace.as_str(), names::CLIENT_SECRET),
            (names::DEFAULT_NAMESPACE, names::CLIENT_SECRET),
        ] {
            // A Secret without our label is not ours; if one holds our
            // name, applying ours conflicts with its owner instead of
            // replacing its CA.
            let secret = c
                .get_opt::<Secret>(ns, name, true)
                .await
                .map_err(|e| format!("Secret {ns}/{name}: {}", error_text(&e)))?;
            let ca = secret
                .and_then(|s| s.data)
                .and_then(|d| d.get("ca.crt").cloned())
                .map(|b| String::from_utf8_lossy(&b.0).into_owned());
            if let Some(ca) = ca {
                let fp = crate::certs::fingerprint(&ca)
                    .unwrap_or_else(|| "(not a PEM certificate)".to_string());
                if fp != local {
                    found.push((c.zone.clone(), format!("{ns}/{name}"), fp));
                }
            }
        }
        Ok::<_, String>(found)
    });
    let mut foreign = Vec::new();
    let mut failed = Vec::new();
    for ((c, _), r) in clusters.iter().zip(futures::future::join_all(reads).await) {
        match r {
            Ok(f) => foreign.extend(f),
            Err(e) => failed.push((c.zone.clone(), e)),
        }
    }
    if !failed.is_empty() {
        return Err(ApplyError::CaUnreadable(failed));
    }
    if foreign.is_empty() {
        return Ok(());
    }
    if replace {
        for (zone, secret, fp) in &foreign {
            progress.say(
                zone,
                format!("replacing the CA in Secret {secret} (SHA-256 {fp}) with {local_description} (--replace-ca)"),
            );
        }
        return Ok(());
    }
    Err(ApplyError::ForeignCa {
        local: local_description.to_string(),
        found: foreign,
    })
}

/// The zones (zone, context, problems) that failed pre-flight. One zone
/// with one problem reads as one `error:` line naming the zone and context,
/// its causes as the error's sources and its hint apart
/// ([`PreflightFailures::hint`]); more are listed one per line.
#[derive(Debug)]
pub struct PreflightFailures {
    pub zones: Vec<(String, String, Vec<PreflightProblem>)>,
    causes: Option<crate::output::Causes>,
}

impl PreflightFailures {
    pub fn new(zones: Vec<(String, String, Vec<PreflightProblem>)>) -> Self {
        let causes = match zones.as_slice() {
            [(_, _, problems)] if problems.len() == 1 => {
                crate::output::Causes::new(&problems[0].causes)
            }
            _ => None,
        };
        PreflightFailures { zones, causes }
    }

    fn single(&self) -> Option<(&str, &str, &PreflightProblem)> {
        match self.zones.as_slice() {
            [(zone, context, problems)] if problems.len() == 1 => {
                Some((zone, context, &problems[0]))
            }
            _ => None,
        }
    }

    /// What to do, when there is one problem (a list carries its hints inline).
    pub fn hint(&self) -> Option<&str> {
        self.single().map(|(_, _, p)| p.hint.as_str())
    }
}

impl std::fmt::Display for PreflightFailures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some((zone, context, p)) = self.single() {
            return write!(
                f,
                "pre-flight failed in zone {zone} (context {context}), nothing was changed: {}",
                p.problem
            );
        }
        write!(
            f,
            "pre-flight failed in {} zone(s), nothing was changed:",
            self.zones.len()
        )?;
        for (zone, context, problems) in &self.zones {
            for p in problems {
                write!(f, "\n  {zone} (context {context}): {p}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for PreflightFailures {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.causes.as_ref().map(|c| c as _)
    }
}

struct Timer {
    steps: Vec<StepTime>,
}

impl Timer {
    fn record(&mut self, step: &str, since: Instant) {
        self.steps.push(StepTime {
            step: step.to_string(),
            seconds: (since.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        });
    }
}

/// The DNS server the config names (`dns.provider`), or `None` to detect it.
pub fn provider_override(config: &Config) -> Option<DnsProvider> {
    config.dns.provider.provider()
}

/// Connects to and pre-flights every zone that `--zone` flags `only`
/// select (all when none) concurrently, each zone's pre-flight within
/// `preflight_timeout`.
pub async fn connect_all(
    config: &Config,
    only: &[String],
    kubeconfig: &kube::config::Kubeconfig,
    preflight_timeout: Duration,
    progress: Progress,
) -> Result<Vec<(Cluster, ClusterInfo)>, ApplyError> {
    let zones: Vec<&crate::config::Zone> = config
        .zones
        .iter()
        .filter(|z| Config::zone_selected(only, &z.name))
        .collect();
    let override_ = provider_override(config);
    let checks = zones.iter().map(|zone| async move {
        progress.step(&zone.name, "pre-flight");
        let cluster = k8s::connect(kubeconfig, zone)
            .await
            .map_err(|e| vec![k8s::connect_problem(&e, &zone.context)])?;
        let info = k8s::preflight(&cluster, zone, override_, preflight_timeout).await?;
        progress.say(
            &zone.name,
            format!(
                "connected (Kubernetes {}, DNS {} in deployment {})",
                info.version, info.dns.provider, info.dns.deployment
            ),
        );
        Ok::<_, Vec<PreflightProblem>>((cluster, info))
    });
    let results = futures::future::join_all(checks).await;
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for (zone, r) in zones.iter().zip(results) {
        match r {
            Ok(c) => ok.push(c),
            Err(problems) => failed.push((zone.name.clone(), zone.context.clone(), problems)),
        }
    }
    if failed.is_empty() {
        Ok(ok)
    } else {
        Err(ApplyError::Preflight(PreflightFailures::new(failed)))
    }
}

/// Zones whose names the clusters still forward although the config no
/// longer has them.
async fn removed_zones(
    config: &Config,
    clusters: &[(Cluster, ClusterInfo)],
) -> (Vec<String>, Vec<String>) {
    let expected: BTreeSet<String> = config
        .zones
        .iter()
        .map(|z| names::zone_domain(&z.namespace, &config.cluster_domain))
        .collect();
    let reads = clusters.iter().map(|(c, info)| async move {
        dns_configmap(c, info.dns.provider)
            .await
            .map(|cm| dns_configmap::our_forwards(info.dns.provider, &dns_configmap::data_of(&cm)))
            .unwrap_or_default()
    });
    let mut domains = BTreeSet::new();
    for forwards in futures::future::join_all(reads).await {
        for f in forwards {
            if !expected.contains(&f.domain) {
                domains.insert(f.domain);
            }
        }
    }
    let suffix = format!(".svc.{}", config.cluster_domain);
    let zones = domains
        .iter()
        .map(|d| d.strip_suffix(&suffix).unwrap_or(d).to_string())
        .collect();
    (zones, domains.into_iter().collect())
}

/// The cluster's DNS ConfigMap (`None`: it does not exist), as this run
/// knows it or read now.
async fn dns_configmap(
    cluster: &Cluster,
    provider: DnsProvider,
) -> Result<Option<ConfigMap>, kube::Error> {
    cluster
        .get_opt::<ConfigMap>(names::KUBE_SYSTEM, provider.configmap_name(), false)
        .await
}

/// What of another federation a cluster holds where we would write: our
/// zone namespace, the objects in `default` and `kube-system` every
/// federation would share, and the DNS forwarding (by its backup's label).
async fn foreign_objects(cluster: &Cluster, federation: &str) -> Result<Vec<String>, String> {
    let read = |what: String, r: Result<Option<ObjectMeta>, kube::Error>| {
        r.map_err(|e| format!("reading {what}: {}", error_text(&e)))
            .map(|m| m.map(|m| (what, m)))
    };
    // Objects without our label are skipped below, so a list by our label
    // that misses one has said enough.
    let (ns, public, secret, lb, backup) = tokio::join!(
        cluster.zone_namespace(),
        cluster.get_opt::<Service>(names::DEFAULT_NAMESPACE, names::PUBLIC_SERVICE, true),
        cluster.get_opt::<Secret>(names::DEFAULT_NAMESPACE, names::CLIENT_SECRET, true),
        cluster.get_opt::<Service>(names::KUBE_SYSTEM, names::DNS_LB_SERVICE, true),
        cluster.get_opt::<ConfigMap>(names::KUBE_SYSTEM, dns_configmap::BACKUP_CONFIGMAP, true),
    );
    let found = [
        read(
            format!("Namespace {}", cluster.namespace),
            ns.map(|o| o.map(|o| o.metadata)),
        ),
        read(
            format!(
                "Service {}/{}",
                names::DEFAULT_NAMESPACE,
                names::PUBLIC_SERVICE
            ),
            public.map(|o| o.map(|o| o.metadata)),
        ),
        read(
            format!(
                "Secret {}/{}",
                names::DEFAULT_NAMESPACE,
                names::CLIENT_SECRET
            ),
            secret.map(|o| o.map(|o| o.metadata)),
        ),
        read(
            format!("Service {}/{}", names::KUBE_SYSTEM, names::DNS_LB_SERVICE),
            lb.map(|o| o.map(|o| o.metadata)),
        ),
        read(
            "the DNS forwarding".to_string(),
            backup.map(|o| o.map(|o| o.metadata)),
        ),
    ];
    let mut out = Vec::new();
    for r in found {
        let Some((what, meta)) = r? else { continue };
        let labels = meta.labels.unwrap_or_default();
        if labels.get(names::MANAGED_BY_KEY).map(String::as_str) != Some(names::MANAGED_BY) {
            continue;
        }
        if let Some(other) = labels.get(names::FEDERATION_KEY)
            && other != federation
        {
            out.push(format!("{what} belongs to federation {other:?}"));
        }
    }
    Ok(out)
}

/// Refuses (before anything is changed) when a cluster holds another
/// federation's objects that this one would share. See [`ApplyError::OtherFederation`].
pub async fn check_other_federations(
    config: &Config,
    clusters: &[(Cluster, ClusterInfo)],
) -> Result<(), ApplyError> {
    let reads = clusters
        .iter()
        .map(|(c, _)| foreign_objects(c, &config.federation));
    let mut found = Vec::new();
    let mut failed = Vec::new();
    for ((c, _), r) in clusters.iter().zip(futures::future::join_all(reads).await) {
        match r {
            Ok(list) => found.extend(
                list.into_iter()
                    .map(|what| (c.zone.clone(), c.context.clone(), what)),
            ),
            Err(problem) => failed.push((
                c.zone.clone(),
                c.context.clone(),
                vec![PreflightProblem {
                    problem,
                    causes: Vec::new(),
                    hint: "the context needs rights to get namespaces, and Services, Secrets and ConfigMaps in `default` and `kube-system`".into(),
                }],
            )),
        }
    }
    if !failed.is_empty() {
        return Err(ApplyError::Preflight(PreflightFailures::new(failed)));
    }
    if !found.is_empty() {
        return Err(ApplyError::OtherFederation {
            federation: config.federation.clone(),
            found,
        });
    }
    Ok(())
}

/// Refuses (before anything is changed, locally or in a cluster) when a
/// cluster holds another federation's objects we would share (see
/// [`check_other_federations`]), and when the clusters still forward zones
/// the config no longer has, unless `prune`.
pub async fn check_removed_zones(
    config: &Config,
    clusters: &[(Cluster, ClusterInfo)],
    prune: bool,
    progress: Progress,
) -> Result<Vec<String>, ApplyError> {
    check_other_federations(config, clusters).await?;
    let (removed, domains) = removed_zones(config, clusters).await;
    if removed.is_empty() {
        return Ok(removed);
    }
    if !prune {
        return Err(ApplyError::RemovedZones {
            zones: removed,
            domains,
        });
    }
    for z in &removed {
        progress.say(
            z,
            "removed from the config: decommissioning its CockroachDB nodes, then pruning it from DNS forwarding and join lists (--prune)",
        );
    }
    Ok(removed)
}

/// What [`check_changes`] learned, for [`apply`].
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    /// Zones whose existing StatefulSet changes (pod template or replicas):
    /// they are rolled one at a time, in config order, health-gated.
    pub rolling: BTreeSet<String>,
    /// Zones whose replicas decrease: zone -> replicas in the cluster now.
    /// Their nodes are decommissioned before the pods go (see
    /// [`crate::decommission::scale_down`]).
    pub scale_downs: BTreeMap<String, i32>,
    /// `--prune`: namespaces of the zones removed from the config, whose
    /// nodes are decommissioned before anything else changes.
    pub pruned: Vec<String>,
}

/// Pre-flight of the changes themselves, before anything is written
/// (locally or in a cluster): a server-side dry run of every planned object
/// (objects in a zone namespace that does not exist yet cannot be dry-run
/// and are skipped), refusing when any would be rejected
/// ([`ApplyError::WouldBeRefused`], naming the field and the remedy); the
/// zones whose StatefulSet would roll; and, when any would, whether the
/// federation is healthy now ([`ApplyError::Unhealthy`] unless
/// `opts.allow_unhealthy`).
pub async fn check_changes(
    config: &Config,
    templates: &Templates,
    certs: &CertBundle,
    clusters: &[(Cluster, ClusterInfo)],
    removed: Vec<String>,
    opts: &ApplyOptions,
    progress: Progress,
) -> anyhow::Result<Prepared> {
    let mut facts = Facts::default();
    for (c, info) in clusters {
        facts.zones.insert(
            c.zone.clone(),
            ZoneFacts {
                dns_addresses: Vec::new(),
                dns_provider: Some(info.dns.provider),
            },
        );
    }
    let plan = plan::plan(config, certs, &facts, templates)?;
    let checks = clusters.iter().map(|(cluster, _)| {
        let zone = plan.zone(&cluster.zone).expect("every zone is planned");
        async move {
            let ns_exists = matches!(cluster.namespace_exists().await, Ok(true));
            let objects: Vec<&Object> = zone
                .stage(Stage::Base)
                .chain(zone.stage(Stage::DnsLoadBalancer))
                .chain(zone.stage(Stage::Workload))
                .filter(|o| ns_exists || o.namespace() != Some(cluster.namespace.as_str()))
                .collect();
            let runs = objects
                .iter()
                .map(|o| async move { (*o, cluster.apply(o, true).await) });
            let mut refused = Vec::new();
            let mut rolling = false;
            let mut scale_down = None;
            for (o, r) in futures::future::join_all(runs).await {
                match r {
                    Ok(applied) => {
                        if let Object::StatefulSet(planned) = o
                            && applied.action == Action::Configured
                        {
                            rolling = true;
                            let live = applied
                                .before
                                .as_ref()
                                .and_then(|b| b.pointer("/spec/replicas"))
                                .and_then(Value::as_i64)
                                .unwrap_or(0) as i32;
                            let want = planned.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                            if live > want {
                                scale_down = Some(live);
                            }
                        }
                    }
                    Err(
                        k8s::ApplyError::Invalid { object, message }
                        | k8s::ApplyError::Refused {
                            object, message, ..
                        },
                    ) => {
                        let detail = match o {
                            Object::StatefulSet(planned) => storage_change(cluster, planned).await,
                            _ => None,
                        };
                        refused.push(match detail {
                            Some(d) => format!("{}: {object}: {d}", cluster.zone),
                            None => format!("{}: {object}: {message}", cluster.zone),
                        });
                    }
                    // Conflicts and other errors stop that zone when applied.
                    Err(_) => {}
                }
            }
            (cluster.zone.clone(), rolling, scale_down, refused)
        }
    });
    let mut prepared = Prepared {
        pruned: removed,
        ..Prepared::default()
    };
    let mut refused = Vec::new();
    for (zone, rolling, scale_down, r) in futures::future::join_all(checks).await {
        if let Some(live) = scale_down {
            prepared.scale_downs.insert(zone.clone(), live);
        }
        if rolling {
            prepared.rolling.insert(zone);
        }
        refused.extend(r);
    }
    // Nodes leave the federation (a scale-down, a removed zone): never
    // below CockroachDB's replication factor.
    let nodes: u32 = config.zones.iter().map(|z| z.replicas).sum();
    if nodes < decommission::MIN_NODES
        && (!prepared.scale_downs.is_empty() || !prepared.pruned.is_empty())
    {
        let leaving = prepared
            .scale_downs
            .keys()
            .map(|z| format!("scale-down in zone {z}"))
            .chain(prepared.pruned.iter().map(|z| format!("removing zone {z}")))
            .collect();
        return Err(ApplyError::TooFewNodes { nodes, leaving }.into());
    }
    // A dry run goes on: it shows each refused change with its diff and
    // fails that zone with the same reason.
    if !refused.is_empty() && !opts.dry_run {
        return Err(ApplyError::WouldBeRefused(refused).into());
    }
    // A dry run shows every change in place (nothing rolls); ungated
    // (tests only), changed StatefulSets are applied with the rest.
    if !opts.gated || opts.dry_run {
        prepared.rolling.clear();
        return Ok(prepared);
    }
    if prepared.rolling.is_empty() {
        return Ok(prepared);
    }
    let all: Vec<&Cluster> = clusters.iter().map(|(c, _)| c).collect();
    let problems = federation_health(&all).await;
    if problems.is_empty() {
        return Ok(prepared);
    }
    let rolling: Vec<String> = config
        .zones
        .iter()
        .filter(|z| prepared.rolling.contains(&z.name))
        .map(|z| z.name.clone())
        .collect();
    if opts.allow_unhealthy {
        for p in &problems {
            progress.say("health", format!("{p} (rolling anyway: --allow-unhealthy)"));
        }
        return Ok(prepared);
    }
    Err(ApplyError::Unhealthy { rolling, problems }.into())
}

/// When the refused StatefulSet change is its storage size: the field, both
/// values and the remedy.
async fn storage_change(cluster: &Cluster, planned: &StatefulSet) -> Option<String> {
    let storage = |s: &StatefulSet| -> Option<String> {
        let claim = s
            .spec
            .as_ref()?
            .volume_claim_templates
            .as_ref()?
            .first()?
            .clone();
        let q = claim.spec?.resources?.requests?.get("storage")?.clone();
        Some(q.0)
    };
    let api: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let live = api.get_opt(names::STATEFULSET).await.ok()??;
    let (was, now) = (storage(&live)?, storage(planned)?);
    (was != now).then(|| format!(
        "spec.volumeClaimTemplates[0].spec.resources.requests.storage cannot change on an existing StatefulSet (cockroachdb.storage: {was} in the cluster, {now} in the config)\n      hint: keep cockroachdb.storage at {was}, or expand the volumes as docs/operations.md#expanding-storage describes, then set it to {now}"
    ))
}

/// Runs apply on connected, pre-flighted clusters. Per-zone failures are in
/// the report; `Err` is a problem of the whole plan (e.g. a template).
pub async fn apply(
    config: &Config,
    templates: &Templates,
    certs: &CertBundle,
    clusters: Vec<(Cluster, ClusterInfo)>,
    prepared: &Prepared,
    opts: &ApplyOptions,
    progress: Progress,
) -> anyhow::Result<ApplyReport> {
    let started = Instant::now();

    let mut facts = Facts::default();
    for (c, info) in &clusters {
        facts.zones.insert(
            c.zone.clone(),
            ZoneFacts {
                dns_addresses: Vec::new(),
                dns_provider: Some(info.dns.provider),
            },
        );
    }
    for (zone, addresses) in &opts.other_zones {
        facts.zones.insert(
            zone.clone(),
            ZoneFacts {
                dns_addresses: addresses.clone(),
                dns_provider: None,
            },
        );
    }
    let first_plan = plan::plan(config, certs, &facts, templates)?;
    if !prepared.pruned.is_empty() {
        decommission_removed(&clusters, &first_plan, &prepared.pruned, opts, progress).await?;
    }
    let semaphore = Arc::new(Semaphore::new(opts.concurrency.max(1)));

    // Phase A.
    let phase_a = clusters.iter().map(|(cluster, info)| {
        let zone_plan = first_plan
            .zone(&cluster.zone)
            .expect("every zone is planned");
        let semaphore = semaphore.clone();
        async move {
            let _permit = semaphore.acquire().await;
            let mut report = ZoneReport {
                zone: cluster.zone.clone(),
                context: cluster.context.clone(),
                cluster: Some(info.clone()),
                ..ZoneReport::default()
            };
            let mut timer = Timer { steps: Vec::new() };
            let t = Instant::now();
            let result = phase_a(cluster, zone_plan, opts, progress, &mut report, &mut timer).await;
            report.steps = timer.steps;
            report.seconds = t.elapsed().as_secs_f64();
            if let Err(e) = result {
                progress.say(&cluster.zone, format!("failed: {e}"));
                progress.finish_zone(&cluster.zone, false);
                report.error = Some(e);
            }
            report
        }
    });
    let mut reports: Vec<ZoneReport> = futures::future::join_all(phase_a).await;

    for r in &reports {
        if let Some(f) = facts.zones.get_mut(&r.zone) {
            f.dns_addresses = r.dns_addresses.clone();
        }
    }
    let full_plan = plan::plan(config, certs, &facts, templates)?;

    // Phase B.
    let phase_b = clusters
        .iter()
        .zip(reports.iter_mut())
        .map(|((cluster, info), report)| {
            let zone_plan = full_plan
                .zone(&cluster.zone)
                .expect("every zone is planned");
            let semaphore = semaphore.clone();
            let defer = prepared.rolling.contains(&cluster.zone);
            async move {
                if report.error.is_some() {
                    return;
                }
                let _permit = semaphore.acquire().await;
                let mut timer = Timer {
                    steps: std::mem::take(&mut report.steps),
                };
                let t = Instant::now();
                let result = phase_b(
                    cluster,
                    info,
                    zone_plan,
                    cluster.zone == config.first_zone().name,
                    defer,
                    opts,
                    progress,
                    report,
                    &mut timer,
                )
                .await;
                report.steps = timer.steps;
                report.seconds += t.elapsed().as_secs_f64();
                if let Err(e) = &result {
                    progress.say(&cluster.zone, format!("failed: {e}"));
                }
                progress.finish_zone(&cluster.zone, result.is_ok());
                report.error = result.err();
            }
        });
    futures::future::join_all(phase_b).await;

    if !opts.dry_run {
        roll_zones(
            &clusters,
            &full_plan,
            prepared,
            opts,
            progress,
            &mut reports,
        )
        .await;
        wait_ready_everywhere(&clusters, &full_plan, opts, progress, &mut reports).await;
    }

    for r in &mut reports {
        r.ok = r.error.is_none();
        r.seconds = (r.seconds * 1000.0).round() / 1000.0;
    }
    let ok = reports.iter().all(|r| r.ok);
    let changed = reports.iter().any(|r| !r.unchanged());
    Ok(ApplyReport {
        version: REPORT_VERSION,
        dry_run: opts.dry_run,
        ok,
        changed,
        zones: reports,
        elapsed_seconds: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
    })
}

async fn apply_objects(
    cluster: &Cluster,
    objects: Vec<&Object>,
    dry_run: bool,
    new_namespace: bool,
    report: &mut ZoneReport,
) -> Result<(), String> {
    let zone = cluster.zone.as_str();
    let applies = objects.into_iter().map(|o| async move {
        // A dry run cannot place objects in a namespace that does not exist yet.
        if dry_run && new_namespace && o.namespace().is_some_and(|ns| ns == cluster.namespace) {
            return (
                Some(ObjectReport::new(
                    zone,
                    o,
                    Action::Created,
                    &Value::Null,
                    &Value::Null,
                )),
                None,
            );
        }
        match cluster.apply(o, dry_run).await {
            Ok(applied) => {
                let before = applied.before.unwrap_or(Value::Null);
                let r = ObjectReport::new(zone, o, applied.action, &before, &applied.after);
                (Some(r), None)
            }
            // A change the server refuses (an immutable field) is still
            // shown, with what it would take, and fails the zone.
            Err(k8s::ApplyError::Refused {
                object,
                message,
                live,
            }) => {
                let after = crate::diff::overlay(&live, &o.to_value());
                let r = ObjectReport::new(zone, o, Action::Configured, &live, &after);
                let hint = r
                    .warnings
                    .iter()
                    .find(|w| w.starts_with("immutable field"))
                    .map(|w| format!("\n      hint: {w}"))
                    .unwrap_or_default();
                (Some(r), Some(format!("{object}: {message}{hint}")))
            }
            Err(e) => (None, Some(e.to_string())),
        }
    });
    let mut first_error = None;
    for (object, error) in futures::future::join_all(applies).await {
        if let Some(o) = object {
            report.objects.push(o);
        }
        if let Some(e) = error {
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

async fn phase_a(
    cluster: &Cluster,
    zone: &ZonePlan,
    opts: &ApplyOptions,
    progress: Progress,
    report: &mut ZoneReport,
    timer: &mut Timer,
) -> Result<(), String> {
    let t = Instant::now();
    let base: Vec<&Object> = zone.stage(Stage::Base).collect();
    let (namespace, rest) = base.split_first().ok_or("the plan has no namespace")?;
    // The DNS load balancer first, with the namespace and everything else
    // outside it: kube-system exists already, and the cloud's time to give
    // the load balancer an address is the longest wait of the whole apply.
    let (inside, outside): (Vec<&Object>, Vec<&Object>) = rest
        .iter()
        .copied()
        .chain(zone.stage(Stage::DnsLoadBalancer))
        .partition(|o| o.namespace() == Some(cluster.namespace.as_str()));
    // The namespace is marked as created by us where it is (see
    // `Cluster::apply`).
    let mut first = vec![*namespace];
    first.extend(outside);
    apply_objects(cluster, first, opts.dry_run, false, report).await?;
    let new_namespace = report
        .objects
        .first()
        .is_some_and(|o| o.action == Action::Created);
    apply_objects(cluster, inside, opts.dry_run, new_namespace, report).await?;
    // The report lists objects in plan order.
    let order: Vec<(String, Option<String>, String)> = base
        .iter()
        .copied()
        .chain(zone.stage(Stage::DnsLoadBalancer))
        .map(|o| {
            (
                o.kind().to_string(),
                o.namespace().map(str::to_string),
                o.name().to_string(),
            )
        })
        .collect();
    report.objects.sort_by_key(|o| {
        order
            .iter()
            .position(|k| k.0 == o.kind && k.1 == o.namespace && k.2 == o.name)
    });
    progress.say(
        &cluster.zone,
        summarize_objects(&report.objects, opts.dry_run),
    );
    timer.record("base objects", t);

    let t = Instant::now();
    let (ips, hosts) = if opts.dry_run {
        match cluster
            .get_opt::<Service>(names::KUBE_SYSTEM, names::DNS_LB_SERVICE, false)
            .await
        {
            Ok(Some(svc)) => lb::ingress(&svc),
            _ => (Vec::new(), Vec::new()),
        }
    } else {
        progress.say(&cluster.zone, "waiting for the DNS load balancer address");
        progress.step(&cluster.zone, "LB pending");
        wait_lb(cluster, opts.wait_timeout)
            .await
            .map_err(|e| format!("waiting for the DNS load balancer address: {e}"))?
    };
    let mut addresses = ips;
    for host in &hosts {
        let zone_name = &cluster.zone;
        progress.step(zone_name, "LB host name resolving");
        let resolved =
            resolve::resolve_until(host, opts.resolver, opts.wait_timeout, |e, waited| {
                progress.say(
                    zone_name,
                    format!(
                        "DNS load balancer {host} does not resolve yet ({}s): {e}",
                        waited.as_secs()
                    ),
                )
            })
            .await
            .map_err(|e| format!("{e}\n      hint: {}", e.hint()))?;
        progress.say(
            &cluster.zone,
            format!("DNS load balancer {host} resolves to {}", join(&resolved)),
        );
        addresses.extend(resolved);
    }
    addresses.sort();
    addresses.dedup();
    if !addresses.is_empty() {
        progress.say(
            &cluster.zone,
            format!("DNS load balancer address {}", join(&addresses)),
        );
    }
    report.dns_addresses = addresses;
    timer.record("dns load balancer", t);
    Ok(())
}

/// Waits, by watching it from the state this run holds (the answer of its
/// apply), until the DNS load balancer Service has an ingress address or
/// host name. While it has none, the Service's Warning events are read now
/// and then: a cloud that refused it says why there, and waiting longer
/// would not help.
async fn wait_lb(
    cluster: &Cluster,
    timeout: Duration,
) -> Result<(Vec<IpAddr>, Vec<String>), WaitError> {
    let services: Api<Service> = Api::namespaced(cluster.client.clone(), names::KUBE_SYSTEM);
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), names::KUBE_SYSTEM);
    let current = cluster
        .get_opt::<Service>(names::KUBE_SYSTEM, names::DNS_LB_SERVICE, false)
        .await
        .map_err(|e| WaitError::Api(error_text(&e)))?;
    crate::k8s::watch::until_checked(
        &services,
        names::DNS_LB_SERVICE,
        current,
        timeout,
        |svc| {
            let Some(svc) = svc else {
                return Err(format!(
                    "Service kube-system/{} does not exist",
                    names::DNS_LB_SERVICE
                ));
            };
            let (ips, hosts) = lb::ingress(svc);
            if ips.is_empty() && hosts.is_empty() {
                Err(format!(
                    "Service kube-system/{} has no load balancer ingress yet",
                    names::DNS_LB_SERVICE
                ))
            } else {
                Ok((ips, hosts))
            }
        },
        |svc| {
            let events = events.clone();
            async move {
                let Some(svc) = svc else { return Ok(()) };
                let fields = format!(
                    "involvedObject.kind=Service,involvedObject.name={},type=Warning",
                    names::DNS_LB_SERVICE
                );
                // Events that cannot be read only cost the early answer.
                if let Ok(list) = events.list(&ListParams::default().fields(&fields)).await
                    && let Some(why) = lb::refusal(&svc, &list.items)
                {
                    return Err(format!(
                        "the cloud refused load balancer Service kube-system/{}: {why}\n      hint: `kubectl -n kube-system describe service {}` shows the cloud's events; check dns.protocols, dns.load_balancer and [dns.annotations] for this cloud",
                        names::DNS_LB_SERVICE,
                        names::DNS_LB_SERVICE
                    ));
                }
                Ok(())
            }
        },
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn phase_b(
    cluster: &Cluster,
    info: &ClusterInfo,
    zone: &ZonePlan,
    first: bool,
    defer_sts: bool,
    opts: &ApplyOptions,
    progress: Progress,
    report: &mut ZoneReport,
    timer: &mut Timer,
) -> Result<(), String> {
    let t = Instant::now();
    let forwards = match &zone.dns.status {
        DnsStatus::Ready(f) => f.clone(),
        DnsStatus::NotNeeded => Vec::new(),
        DnsStatus::Pending { missing } if opts.dry_run => {
            progress.say(
                &cluster.zone,
                format!(
                    "DNS forwarding would be configured once the DNS load balancer of {} has an address",
                    missing.join(", ")
                ),
            );
            report.dns = Some(DnsChange::Updated);
            return apply_workload(
                cluster, zone, first, defer_sts, opts, progress, report, timer,
            )
            .await;
        }
        DnsStatus::Pending { missing } => {
            return Err(format!(
                "DNS forwarding not configured: no DNS load balancer address for {} (re-run apply once {} succeeded)",
                missing.join(", "),
                if missing.len() == 1 {
                    "that zone has"
                } else {
                    "those zones have"
                }
            ));
        }
    };
    let labels: BTreeMap<String, String> = zone.objects[0]
        .object
        .metadata()
        .labels
        .clone()
        .unwrap_or_default();
    let federation = labels
        .get(names::FEDERATION_KEY)
        .cloned()
        .unwrap_or_default();
    let record = dns_configmap::forwarding_record(&federation, &forwards, &zone.dns.options);
    let change = dns_configmap::configure(
        &cluster.client,
        zone.dns.provider,
        &forwards,
        &zone.dns.options,
        &labels,
        record.as_deref(),
        opts.dry_run,
        cluster.known.get::<ConfigMap>(
            names::KUBE_SYSTEM,
            zone.dns.provider.configmap_name(),
            false,
        ),
    )
    .await
    .map_err(|e| format!("{:#}", anyhow::Error::from(e)))?;
    report.dns = Some(change);
    // As read before our write: ours does not change who else manages it.
    let addon_manager = dns_configmap(cluster, zone.dns.provider)
        .await
        .ok()
        .flatten()
        .and_then(|cm| dns_configmap::addon_manager(&cm));
    if let Some(manager) = addon_manager {
        let warning = dns_configmap::addon_warning(zone.dns.provider.configmap_name(), &manager);
        progress.say(&cluster.zone, format!("warning: {warning}"));
        report.warnings.push(warning);
    }
    // Restart whenever the pods were last restarted for other forwarding
    // than the ConfigMap now holds: also after a run that was stopped
    // between writing the ConfigMap and restarting.
    let restarted_for =
        match cluster
            .known
            .get::<Deployment>(names::KUBE_SYSTEM, &info.dns.deployment, false)
        {
            Some(Some(d)) => dns_configmap::restarted_record(&d),
            _ => dns_configmap::restarted_for(&cluster.client, &info.dns)
                .await
                .map_err(|e| e.to_string())?,
        };
    let restart = restarted_for != record;
    let state = match (change, opts.dry_run) {
        (DnsChange::Unchanged, _) => "already in place",
        (_, true) => "would be updated",
        (_, false) => "updated",
    };
    let provider = zone.dns.provider;
    let deployment = &info.dns.deployment;
    progress.say(
        &cluster.zone,
        match (restart, change, opts.dry_run) {
            (false, _, _) => format!("DNS forwarding {state} ({provider})"),
            (true, DnsChange::Unchanged, true) => format!(
                "DNS forwarding {state} ({provider}); deployment {deployment} would be restarted (its pods were not restarted for it)"
            ),
            (true, DnsChange::Unchanged, false) => format!(
                "DNS forwarding {state} ({provider}) but its pods were not restarted for it; restarting deployment {deployment}"
            ),
            (true, _, true) => format!(
                "DNS forwarding {state} ({provider}); deployment {deployment} would be restarted"
            ),
            (true, _, false) => {
                format!("DNS forwarding {state} ({provider}); restarting deployment {deployment}")
            }
        },
    );
    if restart {
        if !opts.dry_run {
            let restarted =
                dns_configmap::rollout_restart(&cluster.client, &info.dns, record.as_deref())
                    .await
                    .map_err(|e| e.to_string())?;
            progress.step(&cluster.zone, "DNS restarting");
            dns_configmap::wait_ready(
                &cluster.client,
                &info.dns,
                Some(restarted),
                opts.wait_timeout,
            )
            .await
            .map_err(|e| format!("{:#}", anyhow::Error::from(e)))?;
            progress.say(&cluster.zone, "DNS ready");
        }
        report.dns_restarted = true;
    }
    timer.record("dns forwarding", t);
    apply_workload(
        cluster, zone, first, defer_sts, opts, progress, report, timer,
    )
    .await
}

/// ExternalName Service and StatefulSet (unless `defer_sts`: a rolling
/// change, done later one zone at a time by [`roll_zones`]), their pods
/// running, then the init Job.
#[allow(clippy::too_many_arguments)]
async fn apply_workload(
    cluster: &Cluster,
    zone: &ZonePlan,
    first: bool,
    defer_sts: bool,
    opts: &ApplyOptions,
    progress: Progress,
    report: &mut ZoneReport,
    timer: &mut Timer,
) -> Result<(), String> {
    let t = Instant::now();
    let new_namespace = report
        .objects
        .first()
        .is_some_and(|o| o.action == Action::Created);
    let before = report.objects.len();
    apply_objects(
        cluster,
        zone.stage(Stage::Workload)
            .filter(|o| !(defer_sts && matches!(o, Object::StatefulSet(_))))
            .collect(),
        opts.dry_run,
        new_namespace,
        report,
    )
    .await?;
    progress.say(
        &cluster.zone,
        summarize_objects(&report.objects[before..], opts.dry_run),
    );
    if defer_sts {
        progress.say(
            &cluster.zone,
            "StatefulSet changes: rolled one zone at a time after the DNS and objects of every zone are in place",
        );
    } else if !opts.dry_run {
        let want = config_replicas(zone);
        wait_rollout(
            cluster,
            &zone.namespace,
            want,
            WaitFor::Running,
            opts.wait_timeout,
            progress,
        )
        .await?;
        progress.say(
            &cluster.zone,
            format!("{want}/{want} CockroachDB pods running on the new revision"),
        );
    }
    timer.record("statefulset", t);

    if first {
        let t = Instant::now();
        if let Some(job) = zone.stage(Stage::Init).next() {
            if !opts.dry_run {
                progress.step(&cluster.zone, "cockroach init");
            }
            let outcome = init(cluster, zone, job, opts).await?;
            progress.say(&cluster.zone, &outcome);
            report.init = Some(outcome);
        }
        timer.record("init", t);
    }
    Ok(())
}

/// The rolling changes, one zone at a time in config order: apply the
/// StatefulSet, wait until its rollout is complete, then (gated) until
/// CockroachDB reports no under-replicated and no unavailable ranges.
/// The first zone that fails stops the rest; their StatefulSets stay as
/// they were.
async fn roll_zones(
    clusters: &[(Cluster, ClusterInfo)],
    plan: &plan::Plan,
    prepared: &Prepared,
    opts: &ApplyOptions,
    progress: Progress,
    reports: &mut [ZoneReport],
) {
    let all: Vec<&Cluster> = clusters.iter().map(|(c, _)| c).collect();
    let mut stopped_by: Option<String> = None;
    for ((cluster, _), report) in clusters.iter().zip(reports.iter_mut()) {
        if !prepared.rolling.contains(&cluster.zone) || report.error.is_some() {
            continue;
        }
        if let Some(first) = &stopped_by {
            let e = format!(
                "its StatefulSet was not changed: the rolling change stopped at zone {first}, which failed first"
            );
            progress.say(&cluster.zone, &e);
            report.error = Some(e);
            continue;
        }
        let zone = plan.zone(&cluster.zone).expect("every zone is planned");
        let t = Instant::now();
        let result = async {
            let sts: Vec<&Object> = zone
                .stage(Stage::Workload)
                .filter(|o| matches!(o, Object::StatefulSet(_)))
                .collect();
            progress.say(&cluster.zone, "rolling StatefulSet (one zone at a time)");
            match (prepared.scale_downs.get(&cluster.zone), sts.first()) {
                (Some(&live), Some(planned)) => {
                    let init = init_job(plan)?;
                    let (before, after) = decommission::scale_down(
                        cluster,
                        planned,
                        init,
                        live,
                        opts.wait_timeout,
                        progress,
                    )
                    .await?;
                    report.objects.push(ObjectReport::new(
                        &cluster.zone,
                        planned,
                        Action::Configured,
                        &before,
                        &after,
                    ));
                }
                _ => apply_objects(cluster, sts, false, false, report).await?,
            }
            let want = wait_zone_ready(cluster, zone, opts, progress).await?;
            progress.say(
                &cluster.zone,
                format!("rollout complete: {want}/{want} pods updated and ready"),
            );
            if opts.gated {
                wait_healthy(&all, opts.wait_timeout).await?;
                progress.say(
                    &cluster.zone,
                    "CockroachDB reports every range fully replicated",
                );
            }
            Ok::<_, String>(())
        }
        .await;
        report.steps.push(StepTime {
            step: "rolling update".into(),
            seconds: (t.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        });
        if let Err(e) = result {
            progress.say(&cluster.zone, format!("failed: {e}"));
            report.error = Some(e);
            stopped_by = Some(cluster.zone.clone());
        }
    }
}

/// The planned init Job (first zone): the template of the one-off
/// `cockroach` Jobs that decommission nodes.
fn init_job(plan: &plan::Plan) -> Result<&k8s_openapi::api::batch::v1::Job, String> {
    plan.zones
        .iter()
        .flat_map(|z| z.stage(Stage::Init))
        .find_map(|o| match o {
            Object::Job(j) => Some(j),
            _ => None,
        })
        .ok_or_else(|| "the plan has no init Job to run `cockroach node` commands from".to_string())
}

/// `--prune`: the removed zones' nodes are decommissioned (from the first
/// zone) before any DNS forwarding or join list changes.
async fn decommission_removed(
    clusters: &[(Cluster, ClusterInfo)],
    plan: &plan::Plan,
    removed: &[String],
    opts: &ApplyOptions,
    progress: Progress,
) -> anyhow::Result<()> {
    let Some((cluster, _)) = clusters.first() else {
        return Ok(());
    };
    if opts.dry_run {
        progress.say(
            &cluster.zone,
            format!(
                "would decommission every CockroachDB node of removed zone(s) {} first",
                removed.join(", ")
            ),
        );
        return Ok(());
    }
    let init = init_job(plan).map_err(anyhow::Error::msg)?;
    decommission::removed_zones(cluster, init, removed, opts.wait_timeout, progress)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "{e}\n      nothing else was changed: the removed zone(s) are still forwarded; fix the cause and apply --prune again"
            )
        })
}

/// After init (or a re-run), every zone's rollout must be complete: pods on
/// the new revision and Ready. Skipped when the first zone (which runs
/// `cockroach init`) failed: its nodes cannot become Ready then.
async fn wait_ready_everywhere(
    clusters: &[(Cluster, ClusterInfo)],
    plan: &plan::Plan,
    opts: &ApplyOptions,
    progress: Progress,
    reports: &mut [ZoneReport],
) {
    if reports.first().is_none_or(|r| r.error.is_some()) {
        return;
    }
    let waits = clusters
        .iter()
        .zip(reports.iter())
        .map(|((cluster, _), report)| {
            let zone = plan.zone(&cluster.zone).expect("every zone is planned");
            let skip = report.error.is_some();
            async move {
                if skip {
                    return None;
                }
                Some(wait_zone_ready(cluster, zone, opts, progress).await)
            }
        });
    let results = futures::future::join_all(waits).await;
    for (((cluster, _), report), r) in clusters.iter().zip(reports.iter_mut()).zip(results) {
        match r {
            Some(Ok(want)) if !report.unchanged() => {
                progress.say(
                    &cluster.zone,
                    format!("{want}/{want} CockroachDB pods ready"),
                );
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                progress.say(&cluster.zone, format!("failed: {e}"));
                report.error = Some(e);
            }
            None => {}
        }
    }
}

/// Waits until the zone's rollout is complete (every pod on the new
/// revision and Ready); the replicas it waited for.
async fn wait_zone_ready(
    cluster: &Cluster,
    zone: &ZonePlan,
    opts: &ApplyOptions,
    progress: Progress,
) -> Result<i32, String> {
    let want = config_replicas(zone);
    wait_rollout(
        cluster,
        &zone.namespace,
        want,
        WaitFor::Ready,
        opts.wait_timeout,
        progress,
    )
    .await
    .map(|()| want)
}

fn config_replicas(zone: &ZonePlan) -> i32 {
    zone.stage(Stage::Workload)
        .find_map(|o| match o {
            Object::StatefulSet(s) => s.spec.as_ref().and_then(|s| s.replicas),
            _ => None,
        })
        .unwrap_or(1)
}

/// What to wait for after the StatefulSet was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFor {
    /// Every pod Running on the update revision: before `cockroach init`,
    /// CockroachDB's readiness probe cannot pass yet.
    Running,
    /// The rollout is complete: every pod on the update revision and Ready.
    Ready,
}

/// Waits for the zone's StatefulSet rollout (see [`WaitFor`]); stops early,
/// naming pod, container and reason, when a pod cannot pull its image,
/// crashes, cannot be scheduled, or the API server refuses its pods.
pub async fn wait_rollout(
    cluster: &Cluster,
    namespace: &str,
    want: i32,
    until: WaitFor,
    timeout: Duration,
    progress: Progress,
) -> Result<(), String> {
    // The StatefulSet as this run last read or wrote it: a rollout complete
    // there needs no further read (pods Ready on the update revision are
    // also Running).
    if let Some(Some(set)) = cluster
        .known
        .get::<StatefulSet>(namespace, names::STATEFULSET, false)
        && crate::rollout::rollout_state(&set, want).complete
    {
        progress.count(
            &cluster.zone,
            "pods",
            want.max(0) as usize,
            want.max(0) as usize,
        );
        return Ok(());
    }
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let sets: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), namespace);
    let selector = format!("{}={}", names::APP_KEY, names::APP);
    wait_for(timeout, || {
        let pods = pods.clone();
        let sets = sets.clone();
        let selector = selector.clone();
        let client = cluster.client.clone();
        let namespace = namespace.to_string();
        async move {
            let by_label = ListParams::default().labels(&selector);
            let (set, list) = tokio::join!(sets.get_opt(names::STATEFULSET), pods.list(&by_label));
            let set = set
                .map_err(|e| error_text(&e))?
                .ok_or_else(|| format!("StatefulSet {namespace}/{} is gone", names::STATEFULSET))?;
            let list = list.map_err(|e| error_text(&e))?;
            for p in &list.items {
                if let Some(problem) = crate::rollout::pod_problem(p) {
                    return Err(format!("{problem}\n      hint: {}", problem.hint(&namespace)));
                }
            }
            let update = set
                .status
                .as_ref()
                .and_then(|s| s.update_revision.clone())
                .unwrap_or_default();
            let state = crate::rollout::rollout_state(&set, want);
            let running = list
                .items
                .iter()
                .filter(|p| {
                    p.metadata.deletion_timestamp.is_none()
                        && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                        && p.metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get("controller-revision-hash"))
                            .is_some_and(|r| *r == update)
                })
                .count() as i32;
            let done = match until {
                WaitFor::Ready => state.complete,
                WaitFor::Running => running >= want && !update.is_empty(),
            };
            progress.count(
                &cluster.zone,
                "pods",
                running.max(0) as usize,
                want.max(0) as usize,
            );
            if done {
                return Ok(Ok(()));
            }
            let mut others: Vec<String> = list
                .items
                .iter()
                .filter_map(|p| {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    if p.metadata.deletion_timestamp.is_some() {
                        return Some(format!("{name}: terminating"));
                    }
                    let phase = p.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_else(|| "Unknown".into());
                    let ready = p
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                    (phase != "Running" || !ready).then(|| format!("{name}: {phase}{}", if phase == "Running" { ", not ready" } else { "" }))
                })
                .collect();
            others.sort();
            let seen = format!(
                "{}{} in namespace {namespace}{}",
                match until {
                    WaitFor::Ready => state.seen.clone(),
                    WaitFor::Running => format!("{running}/{want} pods running on the new revision"),
                },
                "",
                if others.is_empty() { String::new() } else { format!(" ({})", others.join(", ")) }
            );
            // The StatefulSet controller records why it could not create a
            // pod on the StatefulSet; a refusal will not change by waiting.
            match pod_create_failure(&client, &namespace, "StatefulSet", &set.metadata).await {
                Some(events::PodCreateFailure::Refused(why)) => Err(format!(
                    "{seen}: the API server refused the StatefulSet's pods: {why}\n      hint: `kubectl -n {namespace} describe statefulset {}` shows the events; make the pod template (cockroachdb.templates_dir) pass the namespace's Pod Security level and policies",
                    names::STATEFULSET
                )),
                Some(events::PodCreateFailure::Other(why)) => {
                    Ok(Err(format!("{seen}; last FailedCreate: {why}")))
                }
                None => Ok(Err(seen)),
            }
        }
    })
    .await
    .map_err(|e| match e {
        WaitError::Api(e) => format!("the rollout of StatefulSet {namespace}/{} did not complete: {e}", names::STATEFULSET),
        other => format!("waiting for the rollout of StatefulSet {namespace}/{}: {other}", names::STATEFULSET),
    })
}

/// CockroachDB's view of the federation, read through each API server's
/// pod proxy (`/_status/vars` on the HTTP port of every node; the range
/// gauges are per store, so they are summed): the problems that make it
/// unhealthy, empty when healthy. Also every existing StatefulSet's rollout
/// must be complete.
pub async fn federation_health(clusters: &[&Cluster]) -> Vec<String> {
    let reads = clusters.iter().map(|c| async move {
        let mut problems = Vec::new();
        let mut under = 0.0;
        let mut unavailable = 0.0;
        let sets: Api<StatefulSet> = Api::namespaced(c.client.clone(), &c.namespace);
        let set = match sets.get_opt(names::STATEFULSET).await {
            Ok(Some(set)) => set,
            Ok(None) => return (problems, under, unavailable),
            Err(e) => {
                problems.push(format!(
                    "{}: reading StatefulSet: {}",
                    c.zone,
                    error_text(&e)
                ));
                return (problems, under, unavailable);
            }
        };
        let want = set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let state = crate::rollout::rollout_state(&set, want);
        if !state.complete {
            problems.push(format!(
                "{}: StatefulSet {}/{}: {}",
                c.zone,
                c.namespace,
                names::STATEFULSET,
                state.seen
            ));
        }
        let pods: Api<Pod> = Api::namespaced(c.client.clone(), &c.namespace);
        let selector = format!("{}={}", names::APP_KEY, names::APP);
        let list = match pods.list(&ListParams::default().labels(&selector)).await {
            Ok(l) => l,
            Err(e) => {
                problems.push(format!("{}: listing pods: {}", c.zone, error_text(&e)));
                return (problems, under, unavailable);
            }
        };
        for p in &list.items {
            let name = p.metadata.name.clone().unwrap_or_default();
            let phase = p
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default();
            if p.metadata.deletion_timestamp.is_some() || phase != "Running" {
                let what = if phase == "Running" {
                    "terminating".to_string()
                } else {
                    phase
                };
                problems.push(format!("{}: pod {name} is {what}", c.zone));
                continue;
            }
            match node_vars(&c.client, &c.namespace, &name).await {
                Ok(text) => {
                    under +=
                        crate::rollout::gauge_sum(&text, "ranges_underreplicated").unwrap_or(0.0);
                    unavailable +=
                        crate::rollout::gauge_sum(&text, "ranges_unavailable").unwrap_or(0.0);
                }
                Err(e) => problems.push(format!("{}: pod {name}: metrics unreadable: {e}", c.zone)),
            }
        }
        (problems, under, unavailable)
    });
    let mut problems = Vec::new();
    let (mut under, mut unavailable) = (0.0, 0.0);
    for (p, u, a) in futures::future::join_all(reads).await {
        problems.extend(p);
        under += u;
        unavailable += a;
    }
    if unavailable > 0.0 {
        problems.push(format!(
            "CockroachDB reports {unavailable} unavailable ranges (ranges_unavailable)"
        ));
    }
    if under > 0.0 {
        problems.push(format!(
            "CockroachDB reports {under} under-replicated ranges (ranges_underreplicated)"
        ));
    }
    problems
}

/// `/_status/vars` of one CockroachDB node through the API server's pod proxy.
pub async fn node_vars(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
) -> Result<String, String> {
    let req = http::Request::get(format!(
        "/api/v1/namespaces/{namespace}/pods/https:{pod}:{}/proxy/_status/vars",
        names::HTTP_PORT
    ))
    .body(Vec::new())
    .map_err(|e| e.to_string())?;
    // The proxy answers 503 while nothing listens, which the client's retry
    // layer would retry for minutes: a bounded read is an answer too.
    match tokio::time::timeout(NODE_VARS_TIMEOUT, client.request_text(req)).await {
        Ok(r) => r.map_err(|e| error_text(&e)),
        Err(_) => Err(format!(
            "no answer within {}s (the API server's proxy cannot reach the node)",
            NODE_VARS_TIMEOUT.as_secs()
        )),
    }
}

/// Bound of one `/_status/vars` read through the pod proxy.
const NODE_VARS_TIMEOUT: Duration = Duration::from_secs(3);

/// Waits until [`federation_health`] finds no problem.
async fn wait_healthy(clusters: &[&Cluster], timeout: Duration) -> Result<(), String> {
    wait_for(timeout, || async {
        let problems = federation_health(clusters).await;
        Ok(if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        })
    })
    .await
    .map_err(|e| format!("waiting for CockroachDB to report every range fully replicated: {e}"))
}

/// What the controller of `owner` (a `kind` in `namespace`) last said about
/// pods it could not create, if anything newer than our last change. Events
/// that cannot be read only cost the early answer.
async fn pod_create_failure(
    client: &kube::Client,
    namespace: &str,
    kind: &str,
    owner: &ObjectMeta,
) -> Option<events::PodCreateFailure> {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let fields = format!(
        "involvedObject.kind={kind},involvedObject.name={},type=Warning",
        owner.name.as_deref().unwrap_or_default()
    );
    let list = events
        .list(&ListParams::default().fields(&fields))
        .await
        .ok()?;
    events::pod_create_failure(owner, &list.items)
}

/// Runs `cockroach init` once: never when the Job already exists or the
/// StatefulSet carries the initialised annotation.
async fn init(
    cluster: &Cluster,
    zone: &ZonePlan,
    job: &Object,
    opts: &ApplyOptions,
) -> Result<String, String> {
    let jobs: Api<Job> = Api::namespaced(cluster.client.clone(), &zone.namespace);
    let sets: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), &zone.namespace);
    // The annotation is set only after the Job completed: then the Job
    // need not be read at all.
    let marked = cluster
        .get_opt::<StatefulSet>(&zone.namespace, names::STATEFULSET, false)
        .await
        .map_err(|e| error_text(&e))?
        .and_then(|s| s.metadata.annotations)
        .is_some_and(|a| {
            a.get(names::INITIALIZED_ANNOTATION)
                .is_some_and(|v| v == "true")
        });
    if marked {
        return Ok("cluster already initialised".into());
    }
    let completed_earlier = "cluster already initialised (init Job completed earlier)";
    if opts.dry_run {
        return match jobs.get_opt(job.name()).await.map_err(|e| error_text(&e))? {
            Some(existing) if job_done(&existing)? => Ok(completed_earlier.into()),
            Some(_) => Ok("init Job running".into()),
            None => Ok("would run cockroach init (Job cluster-init-secure)".into()),
        };
    }
    let Object::Job(typed) = job else {
        return Err(format!("{} is not a Job", job.describe()));
    };
    // Created, never applied: a Job's template cannot change. One that
    // exists already (an earlier run stopped before marking the
    // StatefulSet, or someone creating it meanwhile) is waited for instead.
    let params = PostParams {
        field_manager: Some(names::FIELD_MANAGER.to_string()),
        ..PostParams::default()
    };
    let (created, current) = match jobs.create(&params, typed).await {
        Ok(created) => (true, Some(created)),
        Err(kube::Error::Api(s)) if s.code == 409 => (
            false,
            jobs.get_opt(job.name()).await.map_err(|e| error_text(&e))?,
        ),
        Err(e) => return Err(format!("creating {}: {}", job.describe(), error_text(&e))),
    };
    if !created
        && let Some(existing) = &current
        && job_done(existing)?
    {
        mark_initialised(&sets).await?;
        return Ok(completed_earlier.into());
    }
    wait_job(
        &cluster.client,
        &jobs,
        job.name(),
        current,
        opts.wait_timeout,
    )
    .await?;
    mark_initialised(&sets).await?;
    Ok(if created {
        "initialised (cockroach init succeeded)".into()
    } else {
        "initialised (init Job completed)".into()
    })
}

fn job_done(job: &Job) -> Result<bool, String> {
    let status = job.status.clone().unwrap_or_default();
    for c in status.conditions.unwrap_or_default() {
        if c.type_ == "Failed" && c.status == "True" {
            return Err(format!(
                "init Job {} failed: {}",
                job.metadata.name.clone().unwrap_or_default(),
                c.message.unwrap_or(c.reason.unwrap_or_default())
            ));
        }
        if c.type_ == "Complete" && c.status == "True" {
            return Ok(true);
        }
    }
    Ok(status.succeeded.unwrap_or(0) >= 1)
}

/// Waits for the init Job by watching it from `current` (the answer of
/// its create); now and then, while it is not done, reads what the Job
/// controller recorded about pods it could not create.
async fn wait_job(
    client: &kube::Client,
    jobs: &Api<Job>,
    name: &str,
    current: Option<Job>,
    timeout: Duration,
) -> Result<(), String> {
    let seen = |job: &Job| {
        let s = job.status.clone().unwrap_or_default();
        format!(
            "init Job {name}: {} active, {} failed",
            s.active.unwrap_or(0),
            s.failed.unwrap_or(0)
        )
    };
    let result = crate::k8s::watch::until_checked(
        jobs,
        name,
        current,
        timeout,
        |job| {
            let Some(job) = job else {
                return Ok(Err(format!("init Job {name} was deleted")));
            };
            match job_done(job) {
                Ok(true) => Ok(Ok(())),
                Ok(false) => Err(seen(job)),
                Err(e) => Ok(Err(e)),
            }
        },
        |job| {
            let client = client.clone();
            async move {
                let Some(job) = job else { return Ok(()) };
                // The Job controller records refused pods on the Job.
                let namespace = job.metadata.namespace.clone().unwrap_or_default();
                match pod_create_failure(&client, &namespace, "Job", &job.metadata).await {
                    Some(events::PodCreateFailure::Refused(why)) => Err(format!(
                        "{}: the API server refused the Job's pods: {why}\n      hint: `kubectl -n {namespace} describe job {name}` shows the events; make the Job template (cockroachdb.templates_dir) pass the namespace's Pod Security level and policies, then delete the Job and apply again",
                        seen(&job)
                    )),
                    _ => Ok(()),
                }
            }
        },
    )
    .await;
    match result {
        Ok(r) => r,
        Err(WaitError::Api(e)) => Err(e),
        Err(other) => Err(format!("waiting for cockroach init: {other}")),
    }
}

async fn mark_initialised(sets: &Api<StatefulSet>) -> Result<(), String> {
    let patch =
        serde_json::json!({"metadata": {"annotations": {names::INITIALIZED_ANNOTATION: "true"}}});
    sets.patch(
        names::STATEFULSET,
        &PatchParams {
            field_manager: Some(names::INIT_FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        },
        &Patch::Merge(&patch),
    )
    .await
    .map(|_| ())
    .map_err(|e| error_text(&e))
}

fn summarize_objects(objects: &[ObjectReport], dry_run: bool) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for o in objects {
        let key = match (o.action, dry_run) {
            (Action::Created, false) => "created",
            (Action::Configured, false) => "configured",
            (Action::Unchanged, _) => "unchanged",
            (Action::Created, true) => "to create",
            (Action::Configured, true) => "to change",
        };
        *counts.entry(key).or_default() += 1;
    }
    let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    format!("{} objects: {}", objects.len(), parts.join(", "))
}

fn join(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A human summary of a report, one line per zone and a closing line.
pub fn render_summary(report: &ApplyReport) -> String {
    let mut out = String::new();
    for z in &report.zones {
        let status = match &z.error {
            Some(e) => format!("FAILED: {e}"),
            None if z.unchanged() => "no changes".to_string(),
            None => {
                let mut parts = vec![summarize_objects(&z.objects, report.dry_run)];
                if let Some(d) = z.dns {
                    parts.push(match (d, report.dry_run) {
                        (DnsChange::Unchanged, _) => "DNS unchanged".into(),
                        (DnsChange::Updated, false) => "DNS updated".into(),
                        (DnsChange::Created, false) => "DNS created".into(),
                        (DnsChange::Updated, true) => "DNS would be updated".into(),
                        (DnsChange::Created, true) => "DNS would be created".into(),
                    });
                }
                if z.dns_restarted {
                    parts.push(if report.dry_run {
                        "DNS would be restarted".into()
                    } else {
                        "DNS restarted".into()
                    });
                }
                if let Some(i) = &z.init {
                    parts.push(i.clone());
                }
                parts.join("; ")
            }
        };
        out.push_str(&format!("{:<16} {status} ({:.1}s)\n", z.zone, z.seconds));
        for w in &z.warnings {
            out.push_str(&format!("{:<16} warning: {w}\n", ""));
        }
    }
    let failed: Vec<&str> = report
        .zones
        .iter()
        .filter(|z| !z.ok)
        .map(|z| z.zone.as_str())
        .collect();
    let verb = if report.dry_run { "dry run" } else { "apply" };
    if failed.is_empty() {
        out.push_str(&format!(
            "{verb} finished in {:.1}s: {} zone(s) ok{}\n",
            report.elapsed_seconds,
            report.zones.len(),
            if report.changed { "" } else { ", no changes" }
        ));
    } else {
        out.push_str(&format!(
            "{verb} finished in {:.1}s: {} of {} zone(s) failed ({}); fix the cause and re-run apply, it picks up where it stopped\n",
            report.elapsed_seconds,
            failed.len(),
            report.zones.len(),
            failed.join(", ")
        ));
    }
    out
}
