//! A cluster's DNS configuration, on the cluster: read the ConfigMap, keep a
//! backup of what was there before us, write our merged forwarding, restart
//! the DNS Deployment with a rollout (never by deleting every pod), and put
//! everything back on teardown.
//!
//! The text manipulation itself is pure and lives in [`crate::dns`]; this
//! module only does the API calls around it. ConfigMap writes use
//! read-modify-write with the object's resourceVersion (optimistic
//! concurrency), not server-side apply: the ConfigMap belongs to the
//! cluster's add-on manager and to the user, and SSA would take ownership of
//! the whole key.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde::Serialize;

use super::{DnsServer, Seen, WaitError, error_text};
use crate::dns::{self, DnsProvider, Forward, ForwardOptions};
use crate::names;

/// ConfigMap in kube-system holding the DNS ConfigMap's data as it was
/// before our first change.
pub const BACKUP_CONFIGMAP: &str = "crdb-multiregion-dns-backup";
const BACKUP_NAME_KEY: &str = "configmap";
const BACKUP_EXISTED_KEY: &str = "existed";
const BACKUP_DATA_KEY: &str = "data.json";
/// How many times a write that lost a race with another writer is redone.
const CONFLICT_RETRIES: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum DnsConfError {
    #[error("ConfigMap kube-system/{configmap}: {message}")]
    Api { configmap: String, message: String },
    #[error("ConfigMap kube-system/{configmap}")]
    Merge {
        configmap: String,
        #[source]
        source: dns::DnsError,
    },
    #[error(
        "ConfigMap kube-system/{configmap} kept changing while we wrote it ({CONFLICT_RETRIES} attempts); try again"
    )]
    Contended { configmap: String },
    #[error("DNS Deployment kube-system/{deployment}: {message}")]
    Deployment { deployment: String, message: String },
    #[error("DNS Deployment kube-system/{deployment} did not become ready: {source}")]
    NotReady {
        deployment: String,
        #[source]
        source: WaitError,
    },
}

/// What configuring forwarding did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DnsChange {
    Unchanged,
    Updated,
    Created,
}

fn api_err(configmap: &str, e: &kube::Error) -> DnsConfError {
    DnsConfError::Api {
        configmap: configmap.to_string(),
        message: error_text(e),
    }
}

/// Writes carry our field manager, so the ConfigMap's managedFields show
/// who changed what.
fn ours() -> PostParams {
    PostParams {
        field_manager: Some(names::FIELD_MANAGER.to_string()),
        ..PostParams::default()
    }
}

pub fn data_of(cm: &Option<ConfigMap>) -> BTreeMap<String, String> {
    cm.as_ref().and_then(|c| c.data.clone()).unwrap_or_default()
}

/// The field manager that owns `cm` with server-side apply, other than us:
/// a cloud add-on manager that re-applies its own version on an add-on
/// update and so can take our forwarding away (EKS installs and updates the
/// CoreDNS add-on by server-side apply as field manager `eks`: Amazon EKS
/// user guide, "Determine fields you can customize for Amazon EKS add-ons").
pub fn addon_manager(cm: &ConfigMap) -> Option<String> {
    cm.metadata
        .managed_fields
        .as_deref()?
        .iter()
        .filter(|m| m.operation.as_deref() == Some("Apply"))
        .filter_map(|m| m.manager.clone())
        .find(|m| m != names::FIELD_MANAGER)
}

/// What a user reads about `manager` owning the DNS ConfigMap `configmap`.
pub fn addon_warning(configmap: &str, manager: &str) -> String {
    if manager == EKS_ADDON_MANAGER {
        format!(
            "ConfigMap kube-system/{configmap} is managed by the EKS CoreDNS add-on (field manager {manager}, server-side apply): an add-on update with resolve-conflicts OVERWRITE puts its Corefile back and removes our forwarding; update the add-on with resolve-conflicts PRESERVE, or put the forwarding into the add-on's `corefile` configuration value, and re-run apply after add-on updates (`check` names the add-on when forwarding is gone)"
        )
    } else {
        format!(
            "ConfigMap kube-system/{configmap} is also managed with server-side apply by {manager:?}: when that manager re-applies it, our forwarding may be removed; re-run apply afterwards (`check` names it when forwarding is gone)"
        )
    }
}

/// The field manager of Amazon EKS add-ons.
pub const EKS_ADDON_MANAGER: &str = "eks";

/// [`addon_manager`] of the DNS ConfigMap of `provider`, if it exists;
/// `None` too when it cannot be read (the warning is a courtesy).
pub async fn addon_manager_of(client: &Client, provider: DnsProvider) -> Option<String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), names::KUBE_SYSTEM);
    let cm = api.get_opt(provider.configmap_name()).await.ok()??;
    addon_manager(&cm)
}

/// The forwarding currently configured by us (not the user's), found
/// through our ownership markers only (see [`dns::our_forwards`]).
pub fn our_forwards(provider: DnsProvider, data: &BTreeMap<String, String>) -> Vec<Forward> {
    dns::our_forwards(provider, data)
}

/// The federation whose DNS forwarding a cluster holds, from the label on
/// our backup ConfigMap; `None` when there is no backup (nobody's, or a
/// backup deleted by hand).
pub async fn owner(client: &Client) -> Result<Option<String>, DnsConfError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), names::KUBE_SYSTEM);
    let backup = api
        .get_opt(BACKUP_CONFIGMAP)
        .await
        .map_err(|e| api_err(BACKUP_CONFIGMAP, &e))?;
    Ok(backup.as_ref().and_then(federation_of))
}

fn federation_of(cm: &ConfigMap) -> Option<String> {
    cm.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(names::FEDERATION_KEY).cloned())
}

fn annotation_of(meta: &ObjectMeta) -> Option<&str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(names::DNS_FORWARDING_ANNOTATION))
        .map(String::as_str)
}

fn set_annotation(meta: &mut ObjectMeta, digest: Option<&str>) {
    match digest {
        Some(d) => {
            meta.annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(names::DNS_FORWARDING_ANNOTATION.to_string(), d.to_string());
        }
        None => {
            if let Some(a) = meta.annotations.as_mut() {
                a.remove(names::DNS_FORWARDING_ANNOTATION);
            }
        }
    }
}

/// Reads the DNS ConfigMap's data (empty when it does not exist).
pub async fn read(
    client: &Client,
    provider: DnsProvider,
) -> Result<BTreeMap<String, String>, DnsConfError> {
    let name = provider.configmap_name();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), names::KUBE_SYSTEM);
    let cm = api.get_opt(name).await.map_err(|e| api_err(name, &e))?;
    Ok(data_of(&cm))
}

/// Merges our forwarding into the cluster's DNS ConfigMap. Saves a backup of
/// the original first (once; a backup is never overwritten). `record` (see
/// [`forwarding_record`]) is written as an annotation with the data. `dry_run`
/// computes the change without writing. `known`: the ConfigMap as the
/// caller read it (`Some(None)`: it does not exist), used for the first
/// attempt instead of reading it again; a write that finds it changed
/// since (409) reads it afresh. `backup_exists`: the caller knows the
/// backup is there (it saved it with [`save_backup`] earlier in the run,
/// or read it), so it is not created again.
#[allow(clippy::too_many_arguments)]
pub async fn configure(
    client: &Client,
    provider: DnsProvider,
    forwards: &[Forward],
    options: &ForwardOptions,
    labels: &BTreeMap<String, String>,
    record: Option<&str>,
    dry_run: bool,
    mut known: Option<Option<ConfigMap>>,
    backup_exists: bool,
) -> Result<DnsChange, DnsConfError> {
    let name = provider.configmap_name();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), names::KUBE_SYSTEM);
    let digest = record.map(String::from);
    for _ in 0..CONFLICT_RETRIES {
        let current = match known.take() {
            Some(current) => current,
            None => api.get_opt(name).await.map_err(|e| api_err(name, &e))?,
        };
        let data = data_of(&current);
        let merged = dns::merge(provider, &data, forwards, options).map_err(|source| {
            DnsConfError::Merge {
                configmap: name.to_string(),
                source,
            }
        })?;
        let recorded = current.as_ref().and_then(|c| annotation_of(&c.metadata));
        // Nothing to add and nothing there: do not create an empty ConfigMap.
        if merged == data
            && recorded == digest.as_deref()
            && (current.is_some() || merged.is_empty())
        {
            return Ok(DnsChange::Unchanged);
        }
        if dry_run {
            return Ok(if current.is_some() {
                DnsChange::Updated
            } else {
                DnsChange::Created
            });
        }
        if !backup_exists {
            save_backup(client, provider, &current, labels).await?;
        }
        let result = match current {
            Some(mut cm) => {
                cm.data = Some(merged);
                set_annotation(&mut cm.metadata, digest.as_deref());
                api.replace(name, &ours(), &cm)
                    .await
                    .map(|_| DnsChange::Updated)
            }
            None => {
                let mut metadata = ObjectMeta {
                    name: Some(name.to_string()),
                    namespace: Some(names::KUBE_SYSTEM.to_string()),
                    ..ObjectMeta::default()
                };
                set_annotation(&mut metadata, digest.as_deref());
                let cm = ConfigMap {
                    metadata,
                    data: Some(merged),
                    ..ConfigMap::default()
                };
                api.create(&ours(), &cm).await.map(|_| DnsChange::Created)
            }
        };
        match result {
            Ok(change) => return Ok(change),
            // Someone else wrote in between: read again and redo the merge.
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(api_err(name, &e)),
        }
    }
    Err(DnsConfError::Contended {
        configmap: name.to_string(),
    })
}

/// Saves the backup of `current` (the DNS ConfigMap of `provider` as it is
/// before our change; `None`: it does not exist). Created only if absent
/// (409 otherwise): a backup is never replaced. apply saves it while the
/// load balancers are being provisioned, from what pre-flight read, so
/// that writing the forwarding later is one request.
pub async fn save_backup(
    client: &Client,
    provider: DnsProvider,
    current: &Option<ConfigMap>,
    labels: &BTreeMap<String, String>,
) -> Result<(), DnsConfError> {
    let configmap = provider.configmap_name();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), names::KUBE_SYSTEM);
    let data = data_of(current);
    // The backup must hold the user's config, never one that already has
    // our entries (e.g. after a backup was deleted by hand).
    let original = if dns::has_ours(provider, &data) {
        dns::remove(provider, &data).unwrap_or(data)
    } else {
        data
    };
    let backup = ConfigMap {
        metadata: ObjectMeta {
            name: Some(BACKUP_CONFIGMAP.to_string()),
            namespace: Some(names::KUBE_SYSTEM.to_string()),
            labels: Some(labels.clone()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([
            (BACKUP_NAME_KEY.to_string(), configmap.to_string()),
            (
                BACKUP_EXISTED_KEY.to_string(),
                current.is_some().to_string(),
            ),
            (
                BACKUP_DATA_KEY.to_string(),
                serde_json::to_string(&original).unwrap_or_default(),
            ),
        ])),
        ..ConfigMap::default()
    };
    match api.create(&ours(), &backup).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(api_err(BACKUP_CONFIGMAP, &e)),
    }
}

fn dns_provider_of(configmap: &str) -> DnsProvider {
    match configmap {
        "kube-dns" => DnsProvider::KubeDns,
        "coredns-custom" => DnsProvider::CoreDnsCustom,
        _ => DnsProvider::CoreDns,
    }
}

/// What teardown did to a cluster's DNS config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "result")]
pub enum Restore {
    /// Nothing of ours was there.
    Untouched,
    /// Our entries were removed; the result equals the backup byte for byte.
    Restored,
    /// Our entries were removed; the user changed other entries since apply,
    /// and those changes were kept.
    RemovedKeepingLaterChanges,
    /// We had created the ConfigMap and it held nothing else: deleted.
    Deleted,
    /// The forwarding belongs to another federation (its backup carries that
    /// federation's label): left alone, DNS not restarted.
    OtherFederation { federation: String },
}

/// Whose forwarding [`restore`] removes.
#[derive(Debug, Clone)]
pub struct Owner<'a> {
    /// Our federation; a backup labelled with another one is left alone.
    pub federation: &'a str,
    /// The zone domains our federation forwards (`<ns>.svc.<cluster domain>`):
    /// still forwarded after removal means our forwarding remains.
    pub domains: &'a BTreeSet<String>,
    /// The kubeconfig context, for the manual fix in errors.
    pub context: &'a str,
}

/// Why teardown left a cluster's DNS config alone.
#[derive(Debug, thiserror::Error)]
#[error(
    "ConfigMap kube-system/{configmap}: {problem}; nothing was written and the backup ConfigMap kube-system/{BACKUP_CONFIGMAP} was kept. To fix by hand: {fix}"
)]
pub struct Damaged {
    pub configmap: String,
    pub problem: String,
    pub fix: String,
}

/// The exact manual fix for our forwarding that cannot be removed safely.
fn manual_fix(provider: DnsProvider, configmap: &str, context: &str, domains: &[String]) -> String {
    let edit = format!("`kubectl --context {context} -n kube-system edit configmap {configmap}`");
    let what = match provider {
        DnsProvider::KubeDns => format!(
            "remove the members {} from `{}` and the key `{}`",
            quoted(domains),
            dns::STUB_DOMAINS_KEY,
            dns::KUBE_DNS_OWNERSHIP_KEY
        ),
        DnsProvider::CoreDns => format!(
            "remove the server blocks for {} from the Corefile, with the lines `{}` and `{}` if any are left",
            quoted(domains),
            dns::BEGIN_MARKER,
            dns::END_MARKER
        ),
        DnsProvider::CoreDnsCustom => format!(
            "remove the key `{}` and any server block for {}",
            dns::CUSTOM_SERVER_KEY,
            quoted(domains)
        ),
    };
    format!(
        "run {edit} and {what}, keeping every other line; the data as it was before apply is in `kubectl --context {context} -n kube-system get configmap {BACKUP_CONFIGMAP} -o jsonpath='{{.data.data\\.json}}'`; then re-run teardown, which deletes the backup once it finds the DNS config clean"
    )
}

fn quoted(domains: &[String]) -> String {
    if domains.is_empty() {
        return "of our zones".to_string();
    }
    domains
        .iter()
        .map(|d| format!("`{d}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Removes our forwarding from the cluster's DNS config, then deletes the
/// backup, but only once a fresh read shows the config clean: no ownership
/// markers and none of `owner.domains` forwarded (unless the original
/// forwarded it). Never writes the backup over the current data (that would
/// lose what users changed since apply): markers damaged by hand stop with
/// [`Damaged`] and the exact manual fix instead. Forwarding labelled with
/// another federation is left alone.
pub async fn restore(
    client: &Client,
    provider: DnsProvider,
    owner: &Owner<'_>,
    dry_run: bool,
) -> Result<Restore, RestoreError> {
    let write = PostParams { dry_run, ..ours() };
    let delete = DeleteParams {
        dry_run,
        ..DeleteParams::default()
    };
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), names::KUBE_SYSTEM);
    let backup = api
        .get_opt(BACKUP_CONFIGMAP)
        .await
        .map_err(|e| api_err(BACKUP_CONFIGMAP, &e))?;
    if let Some(other) = backup.as_ref().and_then(federation_of)
        && other != owner.federation
    {
        return Ok(Restore::OtherFederation { federation: other });
    }
    let backup_cm = backup
        .as_ref()
        .and_then(|b| b.data.clone())
        .unwrap_or_default();
    // The backup names the ConfigMap it was taken from; trust it over detection.
    let (provider, name) = match backup_cm.get(BACKUP_NAME_KEY) {
        Some(n) => (dns_provider_of(n), n.clone()),
        None => (provider, provider.configmap_name().to_string()),
    };
    let existed = backup_cm
        .get(BACKUP_EXISTED_KEY)
        .map(|v| v == "true")
        .unwrap_or(true);
    let original: Option<BTreeMap<String, String>> = backup_cm
        .get(BACKUP_DATA_KEY)
        .and_then(|d| serde_json::from_str(d).ok());
    let leftovers = |data: &BTreeMap<String, String>| {
        dns::leftover_domains(provider, data, owner.domains, original.as_ref()).map_err(|source| {
            DnsConfError::Merge {
                configmap: name.clone(),
                source,
            }
        })
    };
    let damaged = |problem: String, domains: &[String]| Damaged {
        configmap: name.clone(),
        problem,
        fix: manual_fix(provider, &name, owner.context, domains),
    };

    let mut outcome = Restore::Untouched;
    for attempt in 0..=CONFLICT_RETRIES {
        if attempt == CONFLICT_RETRIES {
            return Err(DnsConfError::Contended {
                configmap: name.clone(),
            }
            .into());
        }
        let Some(mut cm) = api.get_opt(&name).await.map_err(|e| api_err(&name, &e))? else {
            break;
        };
        let data = cm.data.clone().unwrap_or_default();
        if !dns::has_ours(provider, &data) {
            let left = leftovers(&data)?;
            if !left.is_empty() {
                return Err(damaged(
                    format!(
                        "the ownership markers of crdb-multiregion are gone (edited by hand?) but forwarding apply added is still there ({})",
                        left.join(", ")
                    ),
                    &left,
                )
                .into());
            }
            if annotation_of(&cm.metadata).is_none() {
                break;
            }
            // Clean, but still carrying our digest: take it off.
            set_annotation(&mut cm.metadata, None);
        } else {
            let restored = match dns::remove(provider, &data) {
                Ok(r) => r,
                Err(e) => {
                    let mut domains: Vec<String> = owner.domains.iter().cloned().collect();
                    if let Ok(left) = leftovers(&data)
                        && !left.is_empty()
                    {
                        domains = left;
                    }
                    return Err(damaged(e.to_string(), &domains).into());
                }
            };
            outcome = match &original {
                Some(o) if &restored != o => Restore::RemovedKeepingLaterChanges,
                _ => Restore::Restored,
            };
            if !existed && restored.is_empty() {
                match api.delete(&name, &delete).await {
                    Ok(_) => {
                        outcome = Restore::Deleted;
                        break;
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => continue,
                    Err(e) => return Err(api_err(&name, &e).into()),
                }
            }
            cm.data = Some(restored);
            set_annotation(&mut cm.metadata, None);
        }
        match api.replace(&name, &write, &cm).await {
            Ok(_) => break,
            Err(kube::Error::Api(s)) if s.code == 409 => {
                outcome = Restore::Untouched;
                continue;
            }
            Err(e) => return Err(api_err(&name, &e).into()),
        }
    }

    if dry_run {
        // The servers accepted the writes; nothing was changed to verify.
        return Ok(outcome);
    }
    // Verify before the backup goes: it is the only record of the original.
    if let Some(cm) = api.get_opt(&name).await.map_err(|e| api_err(&name, &e))? {
        let data = cm.data.unwrap_or_default();
        let left = leftovers(&data)?;
        if dns::has_ours(provider, &data) || !left.is_empty() {
            return Err(damaged(
                format!(
                    "our forwarding is still there after removing it ({}); someone may have written it again meanwhile",
                    if left.is_empty() {
                        "ownership markers".to_string()
                    } else {
                        left.join(", ")
                    }
                ),
                &left,
            )
            .into());
        }
    }
    if backup.is_some() {
        match api.delete(BACKUP_CONFIGMAP, &Default::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(api_err(BACKUP_CONFIGMAP, &e).into()),
        }
    }
    Ok(outcome)
}

/// Why [`restore`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Api(#[from] DnsConfError),
    #[error(transparent)]
    Damaged(#[from] Damaged),
}

/// What we record for `forwards` on the DNS ConfigMap and the DNS pod
/// template: `<federation>/<digest>`, `None` without forwarding.
pub fn forwarding_record(
    federation: &str,
    forwards: &[Forward],
    options: &ForwardOptions,
) -> Option<String> {
    dns::forwarding_digest(forwards, options).map(|d| format!("{federation}/{d}"))
}

/// The record of the forwarding the DNS pods were last restarted for (the
/// DNS Deployment's pod template annotation), `None` if never by us.
pub async fn restarted_for(
    client: &Client,
    dns: &DnsServer,
) -> Result<Option<String>, DnsConfError> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), names::KUBE_SYSTEM);
    let d = api
        .get(&dns.deployment)
        .await
        .map_err(|e| DnsConfError::Deployment {
            deployment: dns.deployment.clone(),
            message: error_text(&e),
        })?;
    Ok(restarted_record(&d))
}

/// [`restarted_for`] of a Deployment already read.
pub fn restarted_record(d: &Deployment) -> Option<String> {
    d.spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| annotation_of(m).map(String::from))
}

/// `kubectl rollout restart`: bump the pod template's restartedAt annotation,
/// so pods are replaced one by one under the Deployment's rollout strategy.
/// The same patch records `record` (what the pods now run with) on the pod
/// template, or removes our record when `None`, so an interrupted restart
/// is noticed on the next run (see [`restarted_for`]).
pub async fn rollout_restart(
    client: &Client,
    dns: &DnsServer,
    record: Option<&str>,
) -> Result<Deployment, DnsConfError> {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let api: Api<Deployment> = Api::namespaced(client.clone(), names::KUBE_SYSTEM);
    let patch = serde_json::json!({
        "spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": now,
            names::DNS_FORWARDING_ANNOTATION: record,
        }}}}
    });
    api.patch(
        &dns.deployment,
        &PatchParams {
            field_manager: Some(names::FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        },
        &Patch::Strategic(&patch),
    )
    .await
    .map_err(|e| DnsConfError::Deployment {
        deployment: dns.deployment.clone(),
        message: error_text(&e),
    })
}

/// Waits until the DNS Deployment's rollout is complete, by watching it
/// from `current` (the answer of [`rollout_restart`]; read first when
/// `None`).
pub async fn wait_ready(
    client: &Client,
    dns: &DnsServer,
    current: Option<Deployment>,
    timeout: Duration,
) -> Result<(), DnsConfError> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), names::KUBE_SYSTEM);
    let not_ready = |source| DnsConfError::NotReady {
        deployment: dns.deployment.clone(),
        source,
    };
    let current = match current {
        Some(d) => Some(d),
        None => api
            .get_opt(&dns.deployment)
            .await
            .map_err(|e| not_ready(WaitError::Request(e)))?,
    };
    let version = current
        .as_ref()
        .and_then(|d| d.metadata.resource_version.clone())
        .unwrap_or_else(|| "0".to_string());
    super::watch::until(&api, &dns.deployment, current, version, timeout, |d| {
        let Some(d) = d else {
            return Seen::Waiting("the Deployment does not exist".to_string());
        };
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let generation = d.metadata.generation.unwrap_or(0);
        let s = d.status.clone().unwrap_or_default();
        let observed = s.observed_generation.unwrap_or(0);
        let updated = s.updated_replicas.unwrap_or(0);
        let available = s.available_replicas.unwrap_or(0);
        let total = s.replicas.unwrap_or(0);
        if observed >= generation && updated == want && available == want && total == want {
            Seen::Done(())
        } else {
            Seen::Waiting(format!(
                "{updated}/{want} pods updated, {available}/{want} available, {total} in total"
            ))
        }
    })
    .await
    .map_err(not_ready)
}

#[cfg(test)]
mod addon_tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

    use super::*;

    fn cm(entries: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                managed_fields: Some(
                    entries
                        .iter()
                        .map(|(manager, op)| ManagedFieldsEntry {
                            manager: Some(manager.to_string()),
                            operation: Some(op.to_string()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn an_add_on_applying_the_configmap_is_found_and_updates_and_our_own_are_not() {
        assert_eq!(
            addon_manager(&cm(&[(names::FIELD_MANAGER, "Update"), ("eks", "Apply")])),
            Some("eks".to_string())
        );
        assert_eq!(
            addon_manager(&cm(&[
                ("kubectl-edit", "Update"),
                (names::FIELD_MANAGER, "Apply")
            ])),
            None
        );
        assert_eq!(addon_manager(&ConfigMap::default()), None);
    }

    #[test]
    fn the_eks_warning_names_the_add_on_and_the_supported_alternatives() {
        let w = addon_warning("coredns", "eks");
        assert!(w.contains("EKS CoreDNS add-on"), "{w}");
        assert!(w.contains("resolve-conflicts PRESERVE"), "{w}");
        assert!(w.contains("`corefile` configuration value"), "{w}");
        let other = addon_warning("coredns", "flux");
        assert!(other.contains("\"flux\""), "{other}");
    }
}
