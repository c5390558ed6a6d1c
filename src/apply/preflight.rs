//! Apply's pre-flight: connect every zone, refuse before any change when
//! the clusters hold another CA or another federation, when zones were
//! removed without --prune, when the API servers would refuse a change
//! (server-side dry run) or when a rolling change meets an unhealthy
//! federation.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use super::ApplyOptions;
use super::decommission::{self, DecommissionError};
use super::waits::federation_health;
use crate::certs::CertBundle;
use crate::config::Config;
use crate::dns::DnsProvider;
use crate::k8s::dns_configmap::{self};
use crate::k8s::{self, Action, Cluster, ClusterInfo, PreflightProblem, error_text};
use crate::names;
use crate::plan::{self, Facts, Object, Stage, ZoneFacts};
use crate::progress::Progress;

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
    /// The plan could not be made (a template, a certificate).
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
    /// `--prune`: the removed zones' nodes could not be decommissioned.
    #[error(
        "{0}\n      nothing else was changed: the removed zone(s) are still forwarded; fix the cause and apply --prune again"
    )]
    Prune(DecommissionError),
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

pub(super) fn list_foreign(found: &[(String, String, String)]) -> String {
    found
        .iter()
        .map(|(zone, context, what)| format!("\n  {zone} (context {context}): {what}"))
        .collect()
}

pub(super) fn list_lines(lines: &[String]) -> String {
    lines.iter().map(|l| format!("\n  {l}")).collect()
}

pub(super) fn list_foreign_cas(found: &[(String, String, String)]) -> String {
    found
        .iter()
        .map(|(zone, secret, fp)| format!("\n  {zone}: Secret {secret} has CA SHA-256 {fp}"))
        .collect()
}

pub(super) fn list_read_failures(failures: &[(String, String)]) -> String {
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
    k8s::connect_each(kubeconfig, zones, |zone, cluster| async move {
        progress.step(&zone.name, "pre-flight");
        let cluster = cluster.map_err(|p| vec![p])?;
        let info = k8s::preflight(&cluster, zone, override_, preflight_timeout).await?;
        progress.say(
            &zone.name,
            format!(
                "connected (Kubernetes {}, DNS {} in deployment {})",
                info.version, info.dns.provider, info.dns.deployment
            ),
        );
        Ok::<_, Vec<PreflightProblem>>((cluster, info))
    })
    .await
    .map_err(|failed| {
        let failed = failed
            .into_iter()
            .map(|(zone, problems)| (zone.name.clone(), zone.context.clone(), problems))
            .collect();
        ApplyError::Preflight(PreflightFailures::new(failed))
    })
}

/// Zones whose names the clusters still forward although the config no
/// longer has them.
pub(super) async fn removed_zones(
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
pub(super) async fn dns_configmap(
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
pub(super) async fn foreign_objects(
    cluster: &Cluster,
    federation: &str,
) -> Result<Vec<String>, ReadError> {
    let read = |what: String, r: Result<Option<ObjectMeta>, kube::Error>| match r {
        Ok(m) => Ok(m.map(|m| (what, m))),
        Err(source) => Err(ReadError { what, source }),
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

/// An object that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading {what}: {}", error_text(.source))]
pub struct ReadError {
    what: String,
    source: kube::Error,
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
            Err(e) => failed.push((
                c.zone.clone(),
                c.context.clone(),
                vec![PreflightProblem {
                    problem: e.to_string(),
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
    /// The plan the dry run checked: apply puts its certificates and facts
    /// in and uses it, instead of rendering every object again.
    pub(super) planned: PlanMade,
}

#[derive(Clone, Default)]
pub(super) struct PlanMade {
    pub(super) plan: plan::Plan,
}

impl std::fmt::Debug for PlanMade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No key material in debug output.
        f.debug_struct("PlanMade").finish_non_exhaustive()
    }
}

/// Pre-flight of the changes themselves (of `rendered`, the plan as
/// [`crate::commands`] rendered it with placeholder certificates: `certs`
/// and the facts are put in here), before anything is written
/// (locally or in a cluster): a server-side dry run of every planned object
/// (objects in a zone namespace that does not exist yet cannot be dry-run
/// and are skipped), refusing when any would be rejected
/// ([`ApplyError::WouldBeRefused`], naming the field and the remedy); the
/// zones whose StatefulSet would roll; and, when any would, whether the
/// federation is healthy now ([`ApplyError::Unhealthy`] unless
/// `opts.allow_unhealthy`).
pub async fn check_changes(
    config: &Config,
    rendered: plan::Plan,
    certs: &CertBundle,
    clusters: &[(Cluster, ClusterInfo)],
    removed: Vec<String>,
    opts: &ApplyOptions,
    progress: Progress,
) -> Result<Prepared, ApplyError> {
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
    let mut plan = rendered;
    plan::replace_certs(&mut plan, config, certs)?;
    plan::refresh_dns(&mut plan, config, &facts);
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
        planned: PlanMade { plan: plan.clone() },
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
        return Err(ApplyError::TooFewNodes { nodes, leaving });
    }
    // A dry run goes on: it shows each refused change with its diff and
    // fails that zone with the same reason.
    if !refused.is_empty() && !opts.dry_run {
        return Err(ApplyError::WouldBeRefused(refused));
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
    Err(ApplyError::Unhealthy { rolling, problems })
}

/// When the refused StatefulSet change is its storage size: the field, both
/// values and the remedy.
pub(super) async fn storage_change(cluster: &Cluster, planned: &StatefulSet) -> Option<String> {
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
    let live = cluster
        .read::<StatefulSet>(&cluster.namespace, names::STATEFULSET)
        .await
        .ok()??;
    let (was, now) = (storage(&live)?, storage(planned)?);
    (was != now).then(|| format!(
        "spec.volumeClaimTemplates[0].spec.resources.requests.storage cannot change on an existing StatefulSet (cockroachdb.storage: {was} in the cluster, {now} in the config)\n      hint: keep cockroachdb.storage at {was}, or expand the volumes as docs/operations.md#expanding-storage describes, then set it to {now}"
    ))
}
