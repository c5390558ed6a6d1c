//! Cleanup of `check`: the probe pods and Service removed (by the uid that
//! was listed, so nobody else's object is), and the namespace the check
//! created deleted only while it holds nothing but the check's own objects.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod, Service, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams};

use super::probe;
use super::session::{NsState, has_probe_label};
use crate::k8s::{Cluster, WaitError, error_text, wait_for};
use crate::names;
use crate::progress::Progress;

pub(super) async fn wait_gone<K>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
) -> Result<(), WaitError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug + kube::Resource,
{
    wait_for(timeout, || async move {
        match api.get_opt(name).await {
            Ok(None) => Ok(Ok(())),
            Ok(Some(_)) => Ok(Err(format!("{name} still exists"))),
            Err(e) => Err(error_text(&e)),
        }
    })
    .await
}

/// Deletes the probe pods and Service of the zone's namespace (the objects
/// carrying the probe label, found with one list of each kind) and waits
/// until the pods are gone. Each delete names the uid that was listed, so an
/// object recreated meanwhile by someone else is not deleted.
pub(super) async fn remove_probe_objects(
    cluster: &Cluster,
    timeout: Duration,
) -> Result<bool, String> {
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let services: Api<Service> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let ours = ListParams::default().labels(&probe::probe_selector());
    let (pod_list, service_list) =
        futures::future::join(pods.list(&ours), services.list(&ours)).await;
    let pod_list = pod_list.map_err(|e| format!("listing probe pods: {}", error_text(&e)))?;
    let service_list =
        service_list.map_err(|e| format!("listing probe Services: {}", error_text(&e)))?;
    let delete = |meta: &kube::api::ObjectMeta, grace: Option<u32>| DeleteParams {
        grace_period_seconds: grace,
        preconditions: Some(kube::api::Preconditions {
            uid: meta.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    let pod_deletes = pod_list.items.iter().map(|p| {
        let name = p.metadata.name.clone().unwrap_or_default();
        let params = delete(&p.metadata, Some(0));
        let pods = &pods;
        async move {
            match pods.delete(&name, &params).await {
                Ok(_) => Ok(()),
                // Gone already, or a new object of that name: not ours.
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
                Err(e) => Err(format!("deleting pod {name}: {}", error_text(&e))),
            }
        }
    });
    let service_deletes = service_list.items.iter().map(|svc| {
        let name = svc.metadata.name.clone().unwrap_or_default();
        let params = delete(&svc.metadata, None);
        let services = &services;
        async move {
            match services.delete(&name, &params).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
                Err(e) => Err(format!("deleting Service {name}: {}", error_text(&e))),
            }
        }
    });
    let (pod_results, service_results) = futures::future::join(
        futures::future::join_all(pod_deletes),
        futures::future::join_all(service_deletes),
    )
    .await;
    for r in pod_results.into_iter().chain(service_results) {
        r?;
    }
    let removed = !pod_list.items.is_empty() || !service_list.items.is_empty();
    if !pod_list.items.is_empty() {
        let uids: BTreeSet<String> = pod_list
            .items
            .iter()
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        let uids = &uids;
        let pods = &pods;
        let ours = &ours;
        wait_for(timeout, || async move {
            let left: Vec<String> = pods
                .list(ours)
                .await
                .map_err(|e| error_text(&e))?
                .items
                .into_iter()
                .filter(|p| p.metadata.uid.as_ref().is_some_and(|u| uids.contains(u)))
                .filter_map(|p| p.metadata.name)
                .collect();
            if left.is_empty() {
                Ok(Ok(()))
            } else {
                Ok(Err(format!("pods {} still exist", left.join(", "))))
            }
        })
        .await
        .map_err(|e| format!("waiting for the probe pods to go: {e}"))?;
    }
    Ok(removed)
}

/// Whether apply has taken on a namespace the check created.
pub(super) fn adopted_by_apply(meta: &kube::api::ObjectMeta) -> bool {
    meta.annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(names::NAMESPACE_CREATED_ANNOTATION))
}

/// Objects in `ns` that are not the check's probes and not what the cluster
/// puts in every namespace (ServiceAccount `default`, ConfigMap
/// `kube-root-ca.crt`): for example what a concurrent apply wrote.
pub(super) async fn foreign_contents(cluster: &Cluster, ns: &str) -> Result<Vec<String>, String> {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret};
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};

    async fn names_of<K>(client: &kube::Client, ns: &str) -> Result<Vec<String>, String>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let kind = K::kind(&()).to_string();
        let api: Api<K> = Api::namespaced(client.clone(), ns);
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("listing {kind} in {ns}: {}", error_text(&e)))?;
        Ok(list
            .items
            .iter()
            .filter(|o| !has_probe_label(o.meta()))
            .map(|o| format!("{kind} {}", o.meta().name.clone().unwrap_or_default()))
            .filter(|d| d != "ServiceAccount default" && d != "ConfigMap kube-root-ca.crt")
            .collect())
    }
    let c = &cluster.client;
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
) -> Result<(), String> {
    let zone = &cluster.zone;
    let ns = &cluster.namespace;
    // Bounded by the caller; waits inside use a generous bound of their own.
    let inner = Duration::from_secs(3600);
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    if matches!(ns_state, NsState::Created | NsState::Creating) {
        let current = namespaces
            .get_opt(ns)
            .await
            .map_err(|e| format!("reading namespace {ns}: {}", error_text(&e)))?;
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
                        let params = DeleteParams {
                            preconditions: Some(kube::api::Preconditions {
                                resource_version: n.metadata.resource_version.clone(),
                                uid: n.metadata.uid.clone(),
                            }),
                            ..DeleteParams::background()
                        };
                        match namespaces.delete(ns, &params).await {
                            Ok(_) => {}
                            Err(kube::Error::Api(s)) if s.code == 404 => {}
                            Err(kube::Error::Api(s)) if s.code == 409 => {
                                progress.say(
                                    zone,
                                    format!("namespace {ns} changed meanwhile; keeping it"),
                                );
                                return remove_probe_objects(cluster, inner).await.map(|_| ());
                            }
                            Err(e) => {
                                return Err(format!("deleting namespace {ns}: {}", error_text(&e)));
                            }
                        }
                    }
                    wait_gone(&namespaces, ns, inner)
                        .await
                        .map_err(|e| format!("waiting for namespace {ns} to go: {e}"))?;
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
