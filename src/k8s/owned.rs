//! The objects a federation owns in one cluster, found by our labels:
//! listing every kind we create (and the PVCs its StatefulSet made, and
//! the DNS backup), deleting them by name, the namespaces `apply` created,
//! and giving back a namespace that existed before apply. Nothing without
//! our labels is listed, so nothing without them is deleted.

use std::collections::BTreeSet;
use std::fmt::Debug;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::Cluster;
use crate::names;
use crate::zone_error::{self, Step, ZoneError};

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

async fn list_kind<K>(cluster: &Cluster, selector: &str) -> Result<Vec<Found>, ZoneError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let list = cluster
        .list_all::<K>(Some(selector))
        .await
        .map_err(zone_error::api(Step::List {
            kind: kind_name::<K>(),
        }))?;
    Ok(list
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
    cluster: &Cluster,
    selector: &str,
    include_backup: bool,
) -> Result<Vec<Found>, ZoneError> {
    let (ns, svc, sec, sa, role, rb, pdb, sts, job, pvc, cm) = tokio::join!(
        list_kind::<Namespace>(cluster, selector),
        list_kind::<Service>(cluster, selector),
        list_kind::<Secret>(cluster, selector),
        list_kind::<ServiceAccount>(cluster, selector),
        list_kind::<Role>(cluster, selector),
        list_kind::<RoleBinding>(cluster, selector),
        list_kind::<PodDisruptionBudget>(cluster, selector),
        list_kind::<StatefulSet>(cluster, selector),
        list_kind::<Job>(cluster, selector),
        list_kind::<PersistentVolumeClaim>(cluster, selector),
        list_kind::<ConfigMap>(cluster, selector),
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

/// Deletes `f` by name (in the background; `dry_run`: the server only
/// checks it). Already gone is fine.
pub async fn delete(cluster: &Cluster, f: &Found, dry_run: bool) -> Result<(), ZoneError> {
    let dp = DeleteParams {
        dry_run,
        ..DeleteParams::background()
    };
    let ns = f.namespace.as_deref().unwrap_or_default();
    let c = cluster.client.clone();
    let result = match f.kind {
        "Namespace" => delete_named(Api::<Namespace>::all(c), &f.name, &dp).await,
        "Service" => delete_named(Api::<Service>::namespaced(c, ns), &f.name, &dp).await,
        "Secret" => delete_named(Api::<Secret>::namespaced(c, ns), &f.name, &dp).await,
        "ServiceAccount" => {
            delete_named(Api::<ServiceAccount>::namespaced(c, ns), &f.name, &dp).await
        }
        "Role" => delete_named(Api::<Role>::namespaced(c, ns), &f.name, &dp).await,
        "RoleBinding" => delete_named(Api::<RoleBinding>::namespaced(c, ns), &f.name, &dp).await,
        "PodDisruptionBudget" => {
            delete_named(Api::<PodDisruptionBudget>::namespaced(c, ns), &f.name, &dp).await
        }
        "StatefulSet" => delete_named(Api::<StatefulSet>::namespaced(c, ns), &f.name, &dp).await,
        "Job" => delete_named(Api::<Job>::namespaced(c, ns), &f.name, &dp).await,
        "PersistentVolumeClaim" => {
            delete_named(
                Api::<PersistentVolumeClaim>::namespaced(c, ns),
                &f.name,
                &dp,
            )
            .await
        }
        "ConfigMap" => delete_named(Api::<ConfigMap>::namespaced(c, ns), &f.name, &dp).await,
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

/// Names of our namespaces that `apply` created (they carry
/// [`names::NAMESPACE_CREATED_ANNOTATION`]).
pub async fn created_namespaces(
    cluster: &Cluster,
    selector: &str,
) -> Result<BTreeSet<String>, ZoneError> {
    let list = cluster
        .list_all::<Namespace>(Some(selector))
        .await
        .map_err(zone_error::api(Step::List { kind: "Namespace" }))?;
    Ok(list
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
pub async fn release_namespace(cluster: &Cluster, name: &str) -> Result<(), ZoneError> {
    let api: Api<Namespace> = Api::all(cluster.client.clone());
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

async fn delete_named<K>(api: Api<K>, name: &str, dp: &DeleteParams) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    api.delete(name, dp).await.map(|_| ())
}
