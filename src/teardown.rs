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
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::Config;
use crate::dns::DnsProvider;
use crate::k8s::dns_configmap::{self, Owner, Restore};
use crate::k8s::owned::{self, Found, list_owned};
use crate::k8s::{self, Cluster, Seen, WaitError};
use crate::names;
use crate::plan::owned_selector;
use crate::progress::Progress;
use crate::zone_error::{ErrorKind, Step, ZoneError};

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
    let owned = list_owned(cluster, &selector, false).await?;
    // Namespaces apply created go with their contents; a namespace that
    // existed before apply (adopted) is kept, only our objects in it go.
    let created = owned::created_namespaces(cluster, &selector).await?;
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
        .map(|f| owned::delete(cluster, f, dry_run));
    for r in futures::future::join_all(deletions).await {
        r?;
    }
    for ns in adopted.iter().filter(|_| !dry_run) {
        owned::release_namespace(cluster, &ns.name).await?;
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
        deleted = k8s::poll(wait_timeout, || {
            let selector = selector.clone();
            let deleting = &deleting;
            async move {
                let left = list_owned(cluster, &selector, false)
                    .await
                    .map_err(WaitError::failed)?;
                if left.is_empty() {
                    return Ok(Seen::Done(()));
                }
                // Outside namespaces being deleted, a controller may
                // recreate what went before its owner did (a StatefulSet's
                // claims, in a namespace we keep): delete again what is
                // still there.
                let again = left.iter().filter(|f| {
                    f.kind != "Namespace"
                        && !f.namespace.as_ref().is_some_and(|n| deleting.contains(n))
                });
                for r in
                    futures::future::join_all(again.map(|f| owned::delete(cluster, f, false))).await
                {
                    r.map_err(WaitError::failed)?;
                }
                let shown: Vec<String> = left.iter().take(5).map(Found::describe).collect();
                Ok(Seen::Waiting(format!(
                    "{} object(s) still present: {}",
                    left.len(),
                    shown.join(", ")
                )))
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
    report.left_behind = list_owned(cluster, &selector, true)
        .await?
        .iter()
        .map(Found::describe)
        .collect();
    Ok(())
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
