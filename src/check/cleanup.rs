//! Cleanup of `check`: the probe pods and Service removed (by the uid that
//! was listed, so nobody else's object is), and the namespace the check
//! created deleted only while it holds nothing but the check's own objects.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod, Service, ServiceAccount};

use super::probe;
use super::session::{NsState, has_probe_label};
use crate::k8s::objects::{Deleted, Exactly};
use crate::k8s::{self, Cluster, Seen, WaitError, error_text};
use crate::names;
use crate::progress::Progress;

/// Why cleaning up a zone stopped.
#[derive(Debug, thiserror::Error)]
pub(super) enum CleanupError {
    /// A request failed; `what` says which (`listing probe pods`, ...).
    #[error("{what}: {}", error_text(.source))]
    Request { what: String, source: kube::Error },
    /// A wait for objects to go ran out or failed.
    #[error("{what}: {source}")]
    Wait { what: String, source: WaitError },
    #[error("cleanup did not finish within {}s", .0.as_secs())]
    TimedOut(Duration),
}

fn request(what: impl Into<String>) -> impl FnOnce(kube::Error) -> CleanupError {
    let what = what.into();
    move |source| CleanupError::Request { what, source }
}

/// Deletes the probe pods and Service of the zone's namespace (the objects
/// carrying the probe label, found with one list of each kind) and waits
/// until the pods are gone. Each delete names the uid that was listed, so an
/// object recreated meanwhile by someone else is not deleted.
pub(super) async fn remove_probe_objects(
    cluster: &Cluster,
    timeout: Duration,
) -> Result<bool, CleanupError> {
    let ns = cluster.namespace.as_str();
    let ours = probe::probe_selector();
    let (pod_list, service_list) = futures::future::join(
        cluster.list_in::<Pod>(ns, Some(&ours)),
        cluster.list_in::<Service>(ns, Some(&ours)),
    )
    .await;
    let pod_list = pod_list.map_err(request("listing probe pods"))?;
    let service_list = service_list.map_err(request("listing probe Services"))?;
    // Gone already, or a new object of that name (not ours): fine.
    let pod_deletes = pod_list.iter().map(|p| async move {
        cluster
            .delete_seen::<Pod>(&p.metadata, Exactly::Uid, Some(0))
            .await
            .map_err(request(format!(
                "deleting pod {}",
                p.metadata.name.as_deref().unwrap_or_default()
            )))
    });
    let service_deletes = service_list.iter().map(|svc| async move {
        cluster
            .delete_seen::<Service>(&svc.metadata, Exactly::Uid, None)
            .await
            .map_err(request(format!(
                "deleting Service {}",
                svc.metadata.name.as_deref().unwrap_or_default()
            )))
    });
    let (pod_results, service_results) = futures::future::join(
        futures::future::join_all(pod_deletes),
        futures::future::join_all(service_deletes),
    )
    .await;
    for r in pod_results.into_iter().chain(service_results) {
        r?;
    }
    let removed = !pod_list.is_empty() || !service_list.is_empty();
    if !pod_list.is_empty() {
        let uids: BTreeSet<String> = pod_list
            .iter()
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        let (uids, ours) = (&uids, &ours);
        k8s::poll(timeout, || async move {
            let left: Vec<String> = cluster
                .list_in::<Pod>(ns, Some(ours))
                .await?
                .into_iter()
                .filter(|p| p.metadata.uid.as_ref().is_some_and(|u| uids.contains(u)))
                .filter_map(|p| p.metadata.name)
                .collect();
            Ok(if left.is_empty() {
                Seen::Done(())
            } else {
                Seen::Waiting(format!("pods {} still exist", left.join(", ")))
            })
        })
        .await
        .map_err(|source| CleanupError::Wait {
            what: "waiting for the probe pods to go".into(),
            source,
        })?;
    }
    Ok(removed)
}

/// Whether apply has taken on a namespace the check created.
pub(super) fn adopted_by_apply(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> bool {
    meta.annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(names::NAMESPACE_CREATED_ANNOTATION))
}

/// Objects in `ns` that are not the check's probes and not what the cluster
/// puts in every namespace (ServiceAccount `default`, ConfigMap
/// `kube-root-ca.crt`): for example what a concurrent apply wrote.
pub(super) async fn foreign_contents(
    cluster: &Cluster,
    ns: &str,
) -> Result<Vec<String>, CleanupError> {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret};
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};

    async fn names_of<K>(cluster: &Cluster, ns: &str) -> Result<Vec<String>, CleanupError>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let kind = K::kind(&()).to_string();
        let list = cluster
            .list_in::<K>(ns, None)
            .await
            .map_err(request(format!("listing {kind} in {ns}")))?;
        Ok(list
            .iter()
            .filter(|o| !has_probe_label(o.meta()))
            .map(|o| format!("{kind} {}", o.meta().name.clone().unwrap_or_default()))
            .filter(|d| d != "ServiceAccount default" && d != "ConfigMap kube-root-ca.crt")
            .collect())
    }
    let c = cluster;
    let parts = futures::future::join_all([
        Box::pin(names_of::<Pod>(c, ns))
            as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>,
        Box::pin(names_of::<Service>(c, ns)),
        Box::pin(names_of::<Secret>(c, ns)),
        Box::pin(names_of::<ConfigMap>(c, ns)),
        Box::pin(names_of::<ServiceAccount>(c, ns)),
        Box::pin(names_of::<StatefulSet>(c, ns)),
        Box::pin(names_of::<Job>(c, ns)),
        Box::pin(names_of::<PersistentVolumeClaim>(c, ns)),
        Box::pin(names_of::<Role>(c, ns)),
        Box::pin(names_of::<RoleBinding>(c, ns)),
        Box::pin(names_of::<PodDisruptionBudget>(c, ns)),
    ])
    .await;
    let mut out = Vec::new();
    for p in parts {
        out.extend(p?);
    }
    Ok(out)
}

pub(super) async fn cleanup_zone(
    cluster: &Cluster,
    ns_state: NsState,
    touched: bool,
    progress: Progress,
) -> Result<(), CleanupError> {
    let zone = &cluster.zone;
    let ns = &cluster.namespace;
    // Bounded by the caller; waits inside use a generous bound of their own.
    let inner = Duration::from_secs(3600);
    if matches!(ns_state, NsState::Created | NsState::Creating) {
        let current = cluster
            .read_cluster_scoped::<Namespace>(ns)
            .await
            .map_err(request(format!("reading namespace {ns}")))?;
        match current {
            None => return Ok(()),
            Some(n) if has_probe_label(&n.metadata) => {
                // Never delete a namespace that meanwhile holds anything not
                // the check's own, or that apply has taken on (an apply that
                // ran alongside the check).
                let others = if adopted_by_apply(&n.metadata) {
                    vec![format!("namespace {ns} was taken on by apply")]
                } else {
                    foreign_contents(cluster, ns).await?
                };
                if others.is_empty() {
                    if n.metadata.deletion_timestamp.is_none() {
                        // Only the version we looked at: if apply labels the
                        // namespace after our look (it writes the namespace
                        // before anything inside), the delete is refused.
                        match cluster
                            .delete_cluster_scoped_seen::<Namespace>(&n.metadata, Exactly::Version)
                            .await
                        {
                            Ok(Deleted::Yes | Deleted::Absent) => {}
                            Ok(Deleted::Changed) => {
                                progress.say(
                                    zone,
                                    format!("namespace {ns} changed meanwhile; keeping it"),
                                );
                                return remove_probe_objects(cluster, inner).await.map(|_| ());
                            }
                            Err(e) => {
                                return Err(request(format!("deleting namespace {ns}"))(e));
                            }
                        }
                    }
                    cluster
                        .wait_namespace_gone(ns, inner)
                        .await
                        .map_err(|source| CleanupError::Wait {
                            what: format!("waiting for namespace {ns} to go"),
                            source,
                        })?;
                    progress.say(
                        zone,
                        format!("removed namespace {ns} (created for the check)"),
                    );
                    return Ok(());
                }
                progress.say(
                    zone,
                    format!(
                        "namespace {ns} now holds objects that are not the check's ({}); keeping it",
                        others.join(", ")
                    ),
                );
            }
            Some(_) => {}
        }
    } else if !touched {
        return Ok(());
    }
    if remove_probe_objects(cluster, inner).await? {
        progress.say(zone, "removed the probe pods and Service");
    }
    Ok(())
}
