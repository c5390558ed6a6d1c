//! `teardown`: remove exactly what `apply` created, concurrently in every
//! zone's cluster, and give each cluster its DNS config back.
//!
//! Per cluster: delete every object carrying our federation's labels
//! (namespaces apply created last, so their contents go with them; a
//! namespace that existed before apply is kept, only our objects in it go),
//! wait until they are gone, remove our DNS forwarding (never another
//! federation's, never by writing the backup over later edits), restart DNS
//! with a rollout while its pods still run with our forwarding, then look
//! again and report anything left. Nothing without our labels is ever
//! deleted.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::Config;
use crate::dns::DnsProvider;
use crate::k8s::dns_configmap::{self, Owner, Restore};
use crate::k8s::{self, Cluster, wait_for};
use crate::names;
use crate::plan::owned_selector;
use crate::progress::Progress;
use crate::zone_error::{self, ErrorKind, Step, ZoneError};

#[derive(Debug, Clone, Default, Serialize)]
pub struct ZoneTeardown {
    pub zone: String,
    pub context: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub deleted: Vec<String>,
    /// Namespaces that existed before apply: kept, only our objects in them
    /// deleted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept_namespaces: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<Restore>,
    pub dns_restarted: bool,
    /// Objects with our labels still present at the end.
    pub left_behind: Vec<String>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TeardownReport {
    /// A dry run: nothing was deleted or written; the counts say what would be.
    pub dry_run: bool,
    pub ok: bool,
    pub zones: Vec<ZoneTeardown>,
    pub purged_local: Vec<String>,
    pub elapsed_seconds: f64,
}

/// An object we own, as found in a cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Found {
    pub kind: &'static str,
    pub namespace: Option<String>,
    pub name: String,
}

impl Found {
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }
}

async fn list_kind<K>(client: &Client, selector: &str) -> Result<Vec<Found>, ZoneError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let api: Api<K> = Api::all(client.clone());
    let list = api
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(zone_error::api(Step::List {
            kind: kind_name::<K>(),
        }))?;
    Ok(list
        .items
        .iter()
        .filter(|o| o.meta().deletion_timestamp.is_none() || K::kind(&()) == "Namespace")
        .map(|o| Found {
            kind: kind_name::<K>(),
            namespace: o.namespace(),
            name: o.name_any(),
        })
        .collect())
}

fn kind_name<K: Resource<DynamicType = ()>>() -> &'static str {
    // Kinds are 'static strings in k8s-openapi; map them to our fixed set.
    match K::kind(&()).as_ref() {
        "Namespace" => "Namespace",
        "Service" => "Service",
        "Secret" => "Secret",
        "ServiceAccount" => "ServiceAccount",
        "Role" => "Role",
        "RoleBinding" => "RoleBinding",
        "PodDisruptionBudget" => "PodDisruptionBudget",
        "StatefulSet" => "StatefulSet",
        "Job" => "Job",
        "ConfigMap" => "ConfigMap",
        "PersistentVolumeClaim" => "PersistentVolumeClaim",
        _ => "Object",
    }
}

/// Every object with our labels (all kinds we create, plus the PVCs the
/// StatefulSet made from our template and the DNS backup ConfigMap).
pub async fn list_owned(
    client: &Client,
    selector: &str,
    include_backup: bool,
) -> Result<Vec<Found>, ZoneError> {
    let (ns, svc, sec, sa, role, rb, pdb, sts, job, pvc, cm) = tokio::join!(
        list_kind::<Namespace>(client, selector),
        list_kind::<Service>(client, selector),
        list_kind::<Secret>(client, selector),
        list_kind::<ServiceAccount>(client, selector),
        list_kind::<Role>(client, selector),
        list_kind::<RoleBinding>(client, selector),
        list_kind::<PodDisruptionBudget>(client, selector),
        list_kind::<StatefulSet>(client, selector),
        list_kind::<Job>(client, selector),
        list_kind::<PersistentVolumeClaim>(client, selector),
        list_kind::<ConfigMap>(client, selector),
    );
    let mut all = Vec::new();
    for part in [ns, svc, sec, sa, role, rb, pdb, sts, job, pvc] {
        all.extend(part?);
    }
    // The join ConfigMap of each zone (the only ConfigMap we create with our
    // labels) always; any other labelled ConfigMap (the DNS backup, or one a
    // user copied our labels onto) only when asked, to be reported.
    all.extend(
        cm?.into_iter()
            .filter(|f| include_backup || f.name == names::JOIN_CONFIGMAP),
    );
    all.sort();
    Ok(all)
}

async fn delete(client: &Client, f: &Found, dry_run: bool) -> Result<(), ZoneError> {
    let dp = DeleteParams {
        dry_run,
        ..DeleteParams::background()
    };
    let ns = f.namespace.as_deref().unwrap_or_default();
    let c = client.clone();
    let result = match f.kind {
        "Namespace" => Api::<Namespace>::all(c)
            .delete(&f.name, &dp)
            .await
            .map(|_| ()),
        "Service" => Api::<Service>::namespaced(c, ns)
            .delete(&f.name, &dp)
            .await
            .map(|_| ()),
        "Secret" => Api::<Secret>::namespaced(c, ns)
            .delete(&f.name, &dp)
            .await
            .map(|_| ()),
        "ServiceAccount" => Api::<ServiceAccount>::namespaced(c, ns)
            .delete(&f.name, &dp)
            .await
            .map(|_| ()),
        "Role" => Api::<Role>::namespaced(c, ns)
            .delete(&f.name, &dp)
            .await
            .map(|_| ()),
        "RoleBinding" => Api::<RoleBinding>::namespaced(c, ns)
            .delete(&f.name, &dp)
            .await
            .map(|_| ()),
        "PodDisruptionBudget" => Api::<PodDisruptionBudget>::namespaced(c, ns)
            .delete(&f.name, &dp)
            .await
            .map(|_| ()),
        "StatefulSet" => Api::<StatefulSet>::namespaced(c, ns)
            .delete(&f.name, &dp)
            .await
            .map(|_| ()),
        "Job" => Api::<Job>::namespaced(c, ns)
            .delete(&f.name, &dp)
            .await
            .map(|_| ()),
        "PersistentVolumeClaim" => Api::<PersistentVolumeClaim>::namespaced(c, ns)
            .delete(&f.name, &dp)
            .await
            .map(|_| ()),
        "ConfigMap" => Api::<ConfigMap>::namespaced(c, ns)
            .delete(&f.name, &dp)
            .await
            .map(|_| ()),
        _ => Ok(()),
    };
    match result {
        Ok(()) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(zone_error::api(Step::Delete {
            object: f.describe(),
        })(e)),
    }
}

/// Tears one zone down. Errors are kept in the report, never thrown, so
/// that every zone is attempted.
pub async fn teardown_zone(
    cluster: &Cluster,
    config: &Config,
    preflight_timeout: Duration,
    wait_timeout: Duration,
    dry_run: bool,
    progress: Progress,
) -> ZoneTeardown {
    let started = Instant::now();
    let mut report = ZoneTeardown {
        zone: cluster.zone.clone(),
        context: cluster.context.clone(),
        ..ZoneTeardown::default()
    };
    if let Err(e) = run_zone(
        cluster,
        config,
        preflight_timeout,
        wait_timeout,
        dry_run,
        progress,
        &mut report,
    )
    .await
    {
        let e = e.text();
        progress.say(&cluster.zone, format!("failed: {e}"));
        report.error = Some(e);
    }
    report.ok = report.error.is_none() && report.left_behind.is_empty();
    report.seconds = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    report
}

async fn run_zone(
    cluster: &Cluster,
    config: &Config,
    preflight_timeout: Duration,
    wait_timeout: Duration,
    dry_run: bool,
    progress: Progress,
    report: &mut ZoneTeardown,
) -> Result<(), ZoneError> {
    let client = &cluster.client;
    k8s::reach(cluster, preflight_timeout)
        .await
        .map_err(|p| ZoneError::new(Step::Reach, ErrorKind::Unreachable(p)))?;
    let dns = k8s::detect_dns(client, config.dns.provider.provider())
        .await
        .ok();

    let selector = owned_selector(config);
    let owned = list_owned(client, &selector, false).await?;
    // Namespaces apply created go with their contents; a namespace that
    // existed before apply (adopted) is kept, only our objects in it go.
    let created = created_namespaces(client, &selector).await?;
    let (namespaces, adopted): (Vec<&Found>, Vec<&Found>) = owned
        .iter()
        .filter(|f| f.kind == "Namespace")
        .partition(|f| created.contains(&f.name));
    // Objects inside namespaces we delete go with them; delete the rest one by one.
    let singles: Vec<&Found> = owned
        .iter()
        .filter(|f| f.kind != "Namespace")
        .filter(|f| {
            !namespaces
                .iter()
                .any(|n| Some(&n.name) == f.namespace.as_ref())
        })
        .collect();
    let deletions = singles
        .iter()
        .chain(namespaces.iter())
        .map(|f| delete(client, f, dry_run));
    for r in futures::future::join_all(deletions).await {
        r?;
    }
    for ns in adopted.iter().filter(|_| !dry_run) {
        release_namespace(client, &ns.name).await?;
        progress.say(
            &cluster.zone,
            format!(
                "namespace {} existed before apply: kept, only our objects in it deleted",
                ns.name
            ),
        );
    }
    report.deleted = singles
        .iter()
        .chain(namespaces.iter())
        .map(|f| f.describe())
        .collect();
    report.kept_namespaces = adopted.iter().map(|f| f.name.clone()).collect();
    let mut deleted = Ok(());
    if owned.is_empty() {
        progress.say(&cluster.zone, "nothing of ours to delete");
    } else if dry_run {
        progress.say(
            &cluster.zone,
            format!(
                "would delete {} object(s) (namespaces take their contents with them): {}",
                report.deleted.len(),
                report.deleted.join(", ")
            ),
        );
        for ns in &adopted {
            progress.say(
                &cluster.zone,
                format!(
                    "namespace {} existed before apply: would be kept, only our objects in it deleted",
                    ns.name
                ),
            );
        }
    } else {
        progress.say(
            &cluster.zone,
            format!(
                "deleting {} object(s) (namespaces take their contents with them)",
                report.deleted.len()
            ),
        );
        let deleting: BTreeSet<String> = namespaces.iter().map(|n| n.name.clone()).collect();
        progress.step(&cluster.zone, "deletion pending");
        deleted = wait_for(wait_timeout, || {
            let selector = selector.clone();
            let deleting = &deleting;
            async move {
                let left = list_owned(client, &selector, false)
                    .await
                    .map_err(|e| e.text())?;
                if left.is_empty() {
                    Ok(Ok(()))
                } else {
                    // Outside namespaces being deleted, a controller may
                    // recreate what went before its owner did (a
                    // StatefulSet's claims, in a namespace we keep): delete
                    // again what is still there.
                    let again = left.iter().filter(|f| {
                        f.kind != "Namespace"
                            && !f.namespace.as_ref().is_some_and(|n| deleting.contains(n))
                    });
                    for r in
                        futures::future::join_all(again.map(|f| delete(client, f, false))).await
                    {
                        r.map_err(|e| e.text())?;
                    }
                    let shown: Vec<String> = left.iter().take(5).map(Found::describe).collect();
                    Ok(Err(format!(
                        "{} object(s) still present: {}",
                        left.len(),
                        shown.join(", ")
                    )))
                }
            }
        })
        .await
        .map_err(|e| ZoneError::new(Step::WaitDeletion, ErrorKind::Wait(e)));
        match &deleted {
            Ok(()) => progress.say(&cluster.zone, "deleted"),
            // DNS forwarding is still removed below: it does not depend on
            // the deletions, and a re-run finishes the rest.
            Err(e) => progress.say(&cluster.zone, e.text()),
        }
    }

    let provider = dns
        .as_ref()
        .map(|d| d.provider)
        .unwrap_or(DnsProvider::KubeDns);
    let domains: BTreeSet<String> = config
        .zones
        .iter()
        .map(|z| names::zone_domain(&z.namespace, &config.cluster_domain))
        .collect();
    let owner = Owner {
        federation: &config.federation,
        domains: &domains,
        context: &cluster.context,
    };
    let restore = dns_configmap::restore(client, provider, &owner, dry_run)
        .await
        .map_err(|e| ZoneError::new(Step::RestoreDns, ErrorKind::Restore(e)))?;
    if restore != Restore::Untouched {
        progress.say(
            &cluster.zone,
            format!("DNS config: {}", restore_text(&restore)),
        );
    }
    // Restart when we changed the config, and whenever the pods still run
    // with our forwarding: also after a teardown that was stopped between
    // restoring the ConfigMap and restarting.
    if let (Some(dns), false) = (&dns, matches!(restore, Restore::OtherFederation { .. })) {
        let ours = format!("{}/", config.federation);
        let restart_error = |e| ZoneError::new(Step::RestartDns, ErrorKind::Dns(e));
        let restarted_for = dns_configmap::restarted_for(client, dns)
            .await
            .map_err(restart_error)?;
        let changed = restore != Restore::Untouched;
        let restart = changed || restarted_for.is_some_and(|r| r.starts_with(&ours));
        if restart && dry_run {
            report.dns_restarted = true;
            progress.say(
                &cluster.zone,
                format!("would restart DNS ({})", dns.deployment),
            );
        } else if restart {
            let restarted = dns_configmap::rollout_restart(client, dns, None)
                .await
                .map_err(restart_error)?;
            report.dns_restarted = true;
            progress.step(&cluster.zone, "DNS restarting");
            dns_configmap::wait_ready(client, dns, Some(restarted), wait_timeout)
                .await
                .map_err(restart_error)?;
            progress.say(&cluster.zone, format!("DNS restarted ({})", dns.deployment));
        }
    }
    report.dns = Some(restore);

    deleted?;
    if dry_run {
        return Ok(());
    }
    report.left_behind = list_owned(client, &selector, true)
        .await?
        .iter()
        .map(Found::describe)
        .collect();
    Ok(())
}

/// Names of our namespaces that `apply` created (they carry
/// [`names::NAMESPACE_CREATED_ANNOTATION`]).
async fn created_namespaces(
    client: &Client,
    selector: &str,
) -> Result<BTreeSet<String>, ZoneError> {
    let api: Api<Namespace> = Api::all(client.clone());
    let list = api
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(zone_error::api(Step::List { kind: "Namespace" }))?;
    Ok(list
        .items
        .iter()
        .filter(|n| {
            n.annotations()
                .get(names::NAMESPACE_CREATED_ANNOTATION)
                .is_some_and(|v| v == "true")
        })
        .map(|n| n.name_any())
        .collect())
}

/// Gives a namespace that existed before apply back: our labels removed,
/// everything else as it is.
async fn release_namespace(client: &Client, name: &str) -> Result<(), ZoneError> {
    let api: Api<Namespace> = Api::all(client.clone());
    let patch = serde_json::json!({"metadata": {"labels": {
        names::MANAGED_BY_KEY: null,
        names::FEDERATION_KEY: null,
        names::ZONE_KEY: null,
    }}});
    match api
        .patch(
            name,
            &PatchParams {
                field_manager: Some(names::FIELD_MANAGER.to_string()),
                ..PatchParams::default()
            },
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(zone_error::api(Step::Release {
            namespace: name.to_string(),
        })(e)),
    }
}

fn restore_text(r: &Restore) -> String {
    match r {
        Restore::Untouched => "untouched (no forwarding of ours in it)".into(),
        Restore::Restored => "restored to the original".into(),
        Restore::RemovedKeepingLaterChanges => {
            "our forwarding removed; changes made by others since apply kept".into()
        }
        Restore::Deleted => "deleted the ConfigMap we had created".into(),
        Restore::OtherFederation { federation } => {
            format!("the forwarding belongs to federation {federation:?}; left alone")
        }
    }
}

/// `kubectl --context C [-n NS] delete KIND NAME` for a [`Found::describe`]
/// text (`Kind ns/name` or `Kind name`).
fn delete_command(context: &str, described: &str) -> String {
    let (kind, rest) = described.split_once(' ').unwrap_or((described, ""));
    let kind = kind.to_ascii_lowercase();
    match rest.split_once('/') {
        Some((ns, name)) => format!("kubectl --context {context} -n {ns} delete {kind} {name}"),
        None => format!("kubectl --context {context} delete {kind} {rest}"),
    }
}

fn would_restore_text(r: &Restore) -> String {
    match r {
        Restore::Untouched => "untouched (no forwarding of ours in it)".into(),
        Restore::Restored => "would restore the original".into(),
        Restore::RemovedKeepingLaterChanges => {
            "would remove our forwarding, keeping changes made by others since apply".into()
        }
        Restore::Deleted => "would delete the ConfigMap we had created".into(),
        Restore::OtherFederation { federation } => {
            format!("the forwarding belongs to federation {federation:?}; would be left alone")
        }
    }
}

pub fn render_summary(report: &TeardownReport) -> String {
    let mut out = String::new();
    for z in &report.zones {
        let status = match (&z.error, z.left_behind.is_empty()) {
            (Some(e), _) => format!("FAILED: {e}"),
            (None, false) => format!(
                "LEFT BEHIND: {}; these carry our labels but teardown did not create them or could not delete them: inspect them and delete them by hand if they should go ({})",
                z.left_behind.join(", "),
                z.left_behind
                    .iter()
                    .map(|o| delete_command(&z.context, o))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            (None, true) if report.dry_run => format!(
                "would delete {} object(s){}; DNS: {}{}",
                z.deleted.len(),
                if z.kept_namespaces.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; would keep namespace(s) {} (they existed before apply)",
                        z.kept_namespaces.join(", ")
                    )
                },
                z.dns
                    .as_ref()
                    .map(would_restore_text)
                    .unwrap_or_else(|| "not checked".into()),
                if z.dns_restarted {
                    ", would restart"
                } else {
                    ""
                }
            ),
            (None, true) => format!(
                "{}{}; DNS {}{}",
                match z.deleted.len() {
                    0 => "nothing of ours to delete".to_string(),
                    n => format!("{n} object(s) deleted"),
                },
                if z.kept_namespaces.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; namespace(s) {} kept (they existed before apply)",
                        z.kept_namespaces.join(", ")
                    )
                },
                z.dns
                    .as_ref()
                    .map(restore_text)
                    .unwrap_or_else(|| "not checked".into()),
                if z.dns_restarted { ", restarted" } else { "" }
            ),
        };
        out.push_str(&format!("{:<16} {status} ({:.1}s)\n", z.zone, z.seconds));
    }
    for p in &report.purged_local {
        out.push_str(&format!("removed {p}\n"));
    }
    let failed = report.zones.iter().filter(|z| !z.ok).count();
    if report.dry_run {
        out.push_str(&format!(
            "dry run finished in {:.1}s: nothing was deleted or written{}\n",
            report.elapsed_seconds,
            if failed == 0 {
                String::new()
            } else {
                format!("; {failed} of {} zone(s) would fail", report.zones.len())
            }
        ));
    } else if failed > 0 && report.zones.iter().all(|z| z.error.is_none()) {
        out.push_str(&format!(
            "teardown finished in {:.1}s: {failed} of {} zone(s) have objects left behind (see LEFT BEHIND above); re-running teardown does not remove them\n",
            report.elapsed_seconds,
            report.zones.len()
        ));
    } else if failed == 0 {
        out.push_str(&format!(
            "teardown finished in {:.1}s: {} zone(s) clean\n",
            report.elapsed_seconds,
            report.zones.len()
        ));
    } else {
        out.push_str(&format!(
            "teardown finished in {:.1}s: {failed} of {} zone(s) not clean; re-run teardown after fixing the cause\n",
            report.elapsed_seconds,
            report.zones.len()
        ));
    }
    out
}
