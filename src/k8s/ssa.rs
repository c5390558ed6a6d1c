//! Server-side apply of planned objects with our one field manager (never
//! forced), reading before only what this run does not already know
//! ([`crate::k8s::known`]), and telling what the apply did (created,
//! configured, unchanged) and what the object was before.

use std::fmt::Debug;

use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::known::{self, Known, Lookup};
use super::{Cluster, error_text};
use crate::names;
use crate::plan::Object;

impl Cluster {
    /// Server-side apply of one planned object (see [`apply_object`]),
    /// without reading it first when this run already knows it, and without
    /// any request when it is known to be as planned already
    /// ([`known::converged`]).
    /// The zone namespace is annotated as created by us when it is (see
    /// [`Cluster::mark_if_created`]).
    pub async fn apply(&self, object: &Object, dry_run: bool) -> Result<Applied, ApplyError> {
        if matches!(object, Object::Namespace(_)) && object.name() == self.namespace {
            let marked = self.mark_if_created(object).await?;
            return apply_with(&self.client, &marked, dry_run, Some(&self.known)).await;
        }
        apply_with(&self.client, object, dry_run, Some(&self.known)).await
    }

    /// The planned namespace, annotated as created by us when it does not
    /// exist yet (or we created it before: by apply, or by `check` for its
    /// probes), so that teardown deletes only namespaces we created. A
    /// namespace that existed before is adopted without the annotation:
    /// teardown keeps it.
    async fn mark_if_created(&self, planned: &Object) -> Result<Object, ApplyError> {
        let existing = self.zone_namespace().await.map_err(|e| ApplyError::Api {
            object: planned.describe(),
            message: format!("reading it: {}", error_text(&e)),
        })?;
        let created = match &existing {
            None => true,
            Some(ns) => {
                let annotations = ns.metadata.annotations.clone().unwrap_or_default();
                let labels = ns.metadata.labels.clone().unwrap_or_default();
                annotations
                    .get(names::NAMESPACE_CREATED_ANNOTATION)
                    .is_some_and(|v| v == "true")
                    || labels
                        .get(crate::check::probe::PROBE_KEY)
                        .is_some_and(|v| v == "true")
            }
        };
        let mut object = planned.clone();
        if created && let Object::Namespace(ns) = &mut object {
            ns.metadata
                .annotations
                .get_or_insert_with(std::collections::BTreeMap::new)
                .insert(
                    names::NAMESPACE_CREATED_ANNOTATION.to_string(),
                    "true".to_string(),
                );
        }
        Ok(object)
    }
}

/// What applying one object did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Created,
    Configured,
    Unchanged,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(
        "{object} is also managed by another tool and server-side apply reports a conflict; crdb-multiregion does not force ownership: {message}"
    )]
    Conflict { object: String, message: String },
    #[error("{object}: {message}")]
    Api { object: String, message: String },
    /// 422: the API server refuses the object itself (an immutable field,
    /// a value out of range); retrying cannot help.
    #[error("{object}: {message}")]
    Invalid { object: String, message: String },
    /// The server refused the change of an existing object as invalid
    /// (422), e.g. a field Kubernetes does not allow to change; `live` is
    /// the object as it is, so the change can still be shown.
    #[error("{object}: {message}")]
    Refused {
        object: String,
        message: String,
        live: Box<Value>,
    },
}

/// Server-side apply of one planned object with our field manager (never
/// forced). `dry_run` asks the server to validate and compute the result
/// without storing it.
/// The outcome of applying one object.
#[derive(Debug, Clone)]
pub struct Applied {
    pub action: Action,
    pub before: Option<Value>,
    pub after: Value,
}

pub async fn apply_object(
    client: &Client,
    object: &Object,
    dry_run: bool,
) -> Result<Applied, ApplyError> {
    apply_with(client, object, dry_run, None).await
}

async fn apply_with(
    client: &Client,
    object: &Object,
    dry_run: bool,
    known: Option<&Known>,
) -> Result<Applied, ApplyError> {
    let ns = object.namespace();
    match object {
        Object::Namespace(o) => ssa(Api::all(client.clone()), o, object, dry_run, known).await,
        Object::Secret(o) => ssa(namespaced(client, ns), o, object, dry_run, known).await,
        Object::ConfigMap(o) => ssa(namespaced(client, ns), o, object, dry_run, known).await,
        Object::ServiceAccount(o) => ssa(namespaced(client, ns), o, object, dry_run, known).await,
        Object::Role(o) => ssa(namespaced(client, ns), o, object, dry_run, known).await,
        Object::RoleBinding(o) => ssa(namespaced(client, ns), o, object, dry_run, known).await,
        Object::Service(o) => ssa(namespaced(client, ns), o, object, dry_run, known).await,
        Object::PodDisruptionBudget(o) => {
            ssa(namespaced(client, ns), o, object, dry_run, known).await
        }
        Object::StatefulSet(o) => ssa(namespaced(client, ns), o, object, dry_run, known).await,
        Object::Job(o) => ssa(namespaced(client, ns), o, object, dry_run, known).await,
    }
}

fn namespaced<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as Resource>::DynamicType: Default,
{
    Api::namespaced(client.clone(), ns.unwrap_or(names::DEFAULT_NAMESPACE))
}

/// Whether the object a server-side apply returned was created by it: its
/// only field manager is our apply. An object that existed before has the
/// entry of whoever wrote it (or the API server's `before-first-apply`).
fn created_by_apply(after: &Value) -> bool {
    after["metadata"]["managedFields"]
        .as_array()
        .is_some_and(|entries| {
            entries
                .iter()
                .all(|e| e["manager"] == names::FIELD_MANAGER && e["operation"] == "Apply")
        })
}

/// Server-side apply of `object` (never forced). What it was before comes
/// from `known` when this run knows it, else from a GET; a real apply of an
/// object that may only lack our label needs no GET (it is created or
/// changed, never unchanged). An object known to be as planned is not
/// written at all.
async fn ssa<K>(
    api: Api<K>,
    typed: &K,
    object: &Object,
    dry_run: bool,
    known: Option<&Known>,
) -> Result<Applied, ApplyError>
where
    K: Clone + DeserializeOwned + Serialize + Debug + Resource,
{
    let name = object.name();
    let api_err = |e: kube::Error| match &e {
        kube::Error::Api(s) if s.code == 409 => ApplyError::Conflict {
            object: object.describe(),
            message: s.message.clone(),
        },
        kube::Error::Api(s) if s.code == 422 => ApplyError::Invalid {
            object: object.describe(),
            message: s.message.clone(),
        },
        _ => ApplyError::Api {
            object: object.describe(),
            message: error_text(&e),
        },
    };
    let lookup = known.map_or(Lookup::Unknown, |k| {
        k.lookup(object.kind(), object.namespace().unwrap_or_default(), name)
    });
    let mut params = PatchParams::apply(names::FIELD_MANAGER);
    if dry_run {
        params = params.dry_run();
    }
    let body = Patch::Apply(typed);
    let patch = || api.patch(name, &params, &body);
    let read = || async {
        api.get_opt(name)
            .await
            .map(|b| b.map(|b| serde_json::to_value(&b).unwrap_or(Value::Null)))
    };
    // `before` is `None` when what it was is not known, and a real apply
    // does not need it.
    let (before, result) = match lookup {
        Lookup::Present(live) => {
            if known::converged(&object.to_value(), &live) {
                return Ok(Applied {
                    action: Action::Unchanged,
                    before: Some(live.clone()),
                    after: live,
                });
            }
            (Some(Some(live)), patch().await)
        }
        Lookup::Absent => (Some(None), patch().await),
        Lookup::AbsentOrUnlabelled if !dry_run => (None, patch().await),
        // A dry run changes nothing: it may read at the same time.
        _ if dry_run => {
            let (before, result) = tokio::join!(read(), patch());
            (Some(before.map_err(api_err)?), result)
        }
        _ => (Some(read().await.map_err(api_err)?), patch().await),
    };
    let after = match result {
        Ok(after) => after,
        Err(kube::Error::Api(s)) if s.code == 422 && matches!(before, Some(Some(_))) => {
            return Err(ApplyError::Refused {
                object: object.describe(),
                message: s.message.clone(),
                live: Box::new(before.flatten().unwrap_or_default()),
            });
        }
        Err(e) => return Err(api_err(e)),
    };
    let after_value = serde_json::to_value(&after).unwrap_or(Value::Null);
    let version = |v: &Value| v["metadata"]["resourceVersion"].clone();
    let action = match &before {
        Some(None) => Action::Created,
        None if created_by_apply(&after_value) => Action::Created,
        None => Action::Configured,
        // A dry run stores nothing, so its answer keeps the version.
        Some(Some(b)) if dry_run && comparable(b) == comparable(&after_value) => Action::Unchanged,
        Some(Some(b)) if !dry_run && version(b) == version(&after_value) => Action::Unchanged,
        Some(Some(_)) => Action::Configured,
    };
    if !dry_run && let Some(k) = known {
        k.wrote(object.kind(), &after_value);
    }
    Ok(Applied {
        action,
        before: before.flatten(),
        after: after_value,
    })
}

/// An object without the fields the server maintains, for comparing content.
pub fn comparable(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in [
            "managedFields",
            "resourceVersion",
            "generation",
            "uid",
            "creationTimestamp",
        ] {
            meta.remove(k);
        }
    }
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    v
}
