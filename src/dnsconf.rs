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

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde::Serialize;

use crate::cluster::{DnsServer, WaitError, error_text, wait_for};
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

fn data_of(cm: &Option<ConfigMap>) -> BTreeMap<String, String> {
    cm.as_ref().and_then(|c| c.data.clone()).unwrap_or_default()
}

/// The forwarding currently configured by us (not the user's).
pub fn our_forwards(provider: DnsProvider, data: &BTreeMap<String, String>) -> Vec<Forward> {
    let all = dns::parse_forwards(provider, data).unwrap_or_default();
    let theirs = dns::remove(provider, data)
        .and_then(|d| dns::parse_forwards(provider, &d))
        .unwrap_or_default();
    all.into_iter().filter(|f| !theirs.contains(f)).collect()
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
/// the original first (once; a backup is never overwritten). `dry_run`
/// computes the change without writing.
pub async fn configure(
    client: &Client,
    provider: DnsProvider,
    forwards: &[Forward],
    options: &ForwardOptions,
    labels: &BTreeMap<String, String>,
    dry_run: bool,
) -> Result<DnsChange, DnsConfError> {
    let name = provider.configmap_name();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), names::KUBE_SYSTEM);
    for _ in 0..CONFLICT_RETRIES {
        let current = api.get_opt(name).await.map_err(|e| api_err(name, &e))?;
        let data = data_of(&current);
        let merged = dns::merge(provider, &data, forwards, options).map_err(|source| {
            DnsConfError::Merge {
                configmap: name.to_string(),
                source,
            }
        })?;
        // Nothing to add and nothing there: do not create an empty ConfigMap.
        if merged == data && (current.is_some() || merged.is_empty()) {
            return Ok(DnsChange::Unchanged);
        }
        if dry_run {
            return Ok(if current.is_some() {
                DnsChange::Updated
            } else {
                DnsChange::Created
            });
        }
        save_backup(client, name, &current, labels).await?;
        let result = match current {
            Some(mut cm) => {
                cm.data = Some(merged);
                api.replace(name, &ours(), &cm)
                    .await
                    .map(|_| DnsChange::Updated)
            }
            None => {
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(name.to_string()),
                        namespace: Some(names::KUBE_SYSTEM.to_string()),
                        ..ObjectMeta::default()
                    },
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

async fn save_backup(
    client: &Client,
    configmap: &str,
    current: &Option<ConfigMap>,
    labels: &BTreeMap<String, String>,
) -> Result<(), DnsConfError> {
    // Created only if absent (409 otherwise): a backup is never replaced.
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), names::KUBE_SYSTEM);
    let data = data_of(current);
    // The backup must hold the user's config, never one that already has
    // our entries (e.g. after a backup was deleted by hand).
    let original = if dns::has_ours(dns_provider_of(configmap), &data) {
        dns::remove(dns_provider_of(configmap), &data).unwrap_or(data)
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
    /// Our entries could not be removed cleanly; the backup was written back.
    RestoredFromBackup,
    /// We had created the ConfigMap and it held nothing else: deleted.
    Deleted,
}

/// Removes our forwarding from the cluster's DNS config and deletes the
/// backup. Returns whether the config changed (DNS needs a restart then).
pub async fn restore(client: &Client, provider: DnsProvider) -> Result<Restore, DnsConfError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), names::KUBE_SYSTEM);
    let backup = api
        .get_opt(BACKUP_CONFIGMAP)
        .await
        .map_err(|e| api_err(BACKUP_CONFIGMAP, &e))?;
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

    let mut outcome = Restore::Untouched;
    for attempt in 0..=CONFLICT_RETRIES {
        if attempt == CONFLICT_RETRIES {
            return Err(DnsConfError::Contended { configmap: name });
        }
        let Some(mut cm) = api.get_opt(&name).await.map_err(|e| api_err(&name, &e))? else {
            break;
        };
        let data = cm.data.clone().unwrap_or_default();
        if !dns::has_ours(provider, &data) {
            break;
        }
        let (restored, how) = match (dns::remove(provider, &data), &original) {
            (Ok(r), Some(o)) if &r == o => (r, Restore::Restored),
            (Ok(r), Some(_)) => (r, Restore::RemovedKeepingLaterChanges),
            (Ok(r), None) => (r, Restore::Restored),
            (Err(_), Some(o)) => (o.clone(), Restore::RestoredFromBackup),
            (Err(source), None) => {
                return Err(DnsConfError::Merge {
                    configmap: name,
                    source,
                });
            }
        };
        let result = if !existed && restored.is_empty() {
            api.delete(&name, &Default::default())
                .await
                .map(|_| Restore::Deleted)
        } else {
            cm.data = Some(restored);
            api.replace(&name, &ours(), &cm).await.map(|_| how)
        };
        match result {
            Ok(r) => {
                outcome = r;
                break;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(api_err(&name, &e)),
        }
    }
    if backup.is_some() {
        match api.delete(BACKUP_CONFIGMAP, &Default::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(api_err(BACKUP_CONFIGMAP, &e)),
        }
    }
    Ok(outcome)
}

/// `kubectl rollout restart`: bump the pod template's restartedAt annotation,
/// so pods are replaced one by one under the Deployment's rollout strategy.
pub async fn rollout_restart(client: &Client, dns: &DnsServer) -> Result<(), DnsConfError> {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let api: Api<Deployment> = Api::namespaced(client.clone(), names::KUBE_SYSTEM);
    let patch = serde_json::json!({
        "spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": now
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
    })?;
    Ok(())
}

/// Waits until the DNS Deployment's rollout is complete.
pub async fn wait_ready(
    client: &Client,
    dns: &DnsServer,
    timeout: Duration,
) -> Result<(), DnsConfError> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), names::KUBE_SYSTEM);
    wait_for(timeout, || {
        let api = api.clone();
        let name = dns.deployment.clone();
        async move {
            let d = api.get(&name).await.map_err(|e| error_text(&e))?;
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let generation = d.metadata.generation.unwrap_or(0);
            let s = d.status.unwrap_or_default();
            let observed = s.observed_generation.unwrap_or(0);
            let updated = s.updated_replicas.unwrap_or(0);
            let available = s.available_replicas.unwrap_or(0);
            let total = s.replicas.unwrap_or(0);
            if observed >= generation && updated == want && available == want && total == want {
                Ok(Ok(()))
            } else {
                Ok(Err(format!(
                    "{updated}/{want} pods updated, {available}/{want} available, {total} in total"
                )))
            }
        }
    })
    .await
    .map_err(|source| DnsConfError::NotReady {
        deployment: dns.deployment.clone(),
        source,
    })
}

/// Reads the whole backup, for tests and diagnostics.
pub async fn read_backup(
    client: &Client,
) -> Result<Option<BTreeMap<String, String>>, DnsConfError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), names::KUBE_SYSTEM);
    Ok(api
        .get_opt(BACKUP_CONFIGMAP)
        .await
        .map_err(|e| api_err(BACKUP_CONFIGMAP, &e))?
        .and_then(|c| c.data))
}
