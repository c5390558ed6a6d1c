//! Plain reads and writes of one zone's objects for the commands and steps
//! that do not go through server-side apply (`status`, `check`,
//! `teardown`, apply's Jobs and waits): get, list, create with our field
//! manager, delete (optionally only the object that was seen, by uid), the
//! StatefulSet's initialised mark, Warning events of an object, pod logs,
//! watches of one object. Reads here do not go through
//! [`crate::k8s::known`]: they always ask the API server.

use std::fmt::Debug;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::api::{
    Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams, Preconditions,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::wait::{Seen, WaitError, poll};
use super::{Cluster, watch};
use crate::names;

/// What a delete found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// Deleted (or its deletion started).
    Yes,
    /// Not there (404).
    Absent,
    /// No longer the object that was seen (409): left alone.
    Changed,
}

/// Which version of an object a delete may remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exactly {
    /// The object with the uid that was seen.
    Uid,
    /// The object with the uid and resourceVersion that were seen.
    Version,
}

fn list_params(selector: Option<&str>) -> ListParams {
    match selector {
        Some(s) => ListParams::default().labels(s),
        None => ListParams::default(),
    }
}

/// Writes carry our field manager, so managedFields show who wrote what.
fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(names::FIELD_MANAGER.to_string()),
        ..PostParams::default()
    }
}

impl Cluster {
    fn api_in<K>(&self, namespace: &str) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// The object `namespace/name` as it is now.
    pub async fn read<K>(&self, namespace: &str, name: &str) -> Result<Option<K>, kube::Error>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        self.api_in::<K>(namespace).get_opt(name).await
    }

    /// The object `namespace/name`, which must exist (a 404 is an error).
    pub async fn get<K>(&self, namespace: &str, name: &str) -> Result<K, kube::Error>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        self.api_in::<K>(namespace).get(name).await
    }

    /// The cluster-scoped object `name` (a Namespace, a Node) as it is now.
    pub async fn read_cluster_scoped<K>(&self, name: &str) -> Result<Option<K>, kube::Error>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    {
        Api::<K>::all(self.client.clone()).get_opt(name).await
    }

    /// The objects of kind `K` in `namespace`, those matching `selector`
    /// when given.
    pub async fn list_in<K>(
        &self,
        namespace: &str,
        selector: Option<&str>,
    ) -> Result<Vec<K>, kube::Error>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        let list = self
            .api_in::<K>(namespace)
            .list(&list_params(selector))
            .await?;
        Ok(list.items)
    }

    /// The objects of kind `K` in every namespace (or cluster-scoped ones),
    /// those matching `selector` when given.
    pub async fn list_all<K>(&self, selector: Option<&str>) -> Result<Vec<K>, kube::Error>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    {
        let api: Api<K> = Api::all(self.client.clone());
        Ok(api.list(&list_params(selector)).await?.items)
    }

    /// Creates `object` in `namespace` with our field manager; the object as
    /// created.
    pub async fn create_in<K>(&self, namespace: &str, object: &K) -> Result<K, kube::Error>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Serialize
            + Debug,
    {
        self.api_in::<K>(namespace)
            .create(&post_params(), object)
            .await
    }

    /// Creates the cluster-scoped `object` with our field manager.
    pub async fn create_cluster_scoped<K>(&self, object: &K) -> Result<K, kube::Error>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug,
    {
        Api::<K>::all(self.client.clone())
            .create(&post_params(), object)
            .await
    }

    /// Deletes the object `meta` describes (in `meta`'s namespace, in the
    /// background), and only that one as `exactly` says: an object
    /// recreated meanwhile under the same name, or changed since, is left
    /// alone ([`Deleted::Changed`]). `grace`: a pod's grace period, when not
    /// its own.
    pub async fn delete_seen<K>(
        &self,
        meta: &ObjectMeta,
        exactly: Exactly,
        grace: Option<u32>,
    ) -> Result<Deleted, kube::Error>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        let api = self.api_in::<K>(meta.namespace.as_deref().unwrap_or_default());
        delete_with(&api, meta, exactly, grace).await
    }

    /// Deletes `namespace/name` of kind `K` (in the background), whatever
    /// version it is.
    pub async fn delete_in<K>(&self, namespace: &str, name: &str) -> Result<(), kube::Error>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        self.api_in::<K>(namespace)
            .delete(name, &DeleteParams::background())
            .await
            .map(|_| ())
    }

    /// Marks the StatefulSet of `namespace` initialised (its
    /// [`names::INITIALIZED_ANNOTATION`], written by the init field
    /// manager), once `cockroach init` succeeded.
    pub async fn mark_initialised(&self, namespace: &str) -> Result<(), kube::Error> {
        let patch = serde_json::json!({"metadata": {"annotations": {names::INITIALIZED_ANNOTATION: "true"}}});
        let params = PatchParams {
            field_manager: Some(names::INIT_FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        };
        self.api_in::<StatefulSet>(namespace)
            .patch(names::STATEFULSET, &params, &Patch::Merge(&patch))
            .await
            .map(|_| ())
    }

    /// The Warning events recorded on the `kind` named `name` in
    /// `namespace` (what a controller or a cloud said it could not do).
    pub async fn warning_events(
        &self,
        namespace: &str,
        kind: &str,
        name: &str,
    ) -> Result<Vec<Event>, kube::Error> {
        let fields = format!("involvedObject.kind={kind},involvedObject.name={name},type=Warning");
        let list = self
            .api_in::<Event>(namespace)
            .list(&ListParams::default().fields(&fields))
            .await?;
        Ok(list.items)
    }

    /// [`Cluster::delete_seen`] of a cluster-scoped object (a Namespace).
    pub async fn delete_cluster_scoped_seen<K>(
        &self,
        meta: &ObjectMeta,
        exactly: Exactly,
    ) -> Result<Deleted, kube::Error>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    {
        delete_with(&Api::<K>::all(self.client.clone()), meta, exactly, None).await
    }

    /// GET `path` of `port` in pod `namespace/pod` over HTTPS, through the
    /// API server's pod proxy
    /// (`/api/v1/namespaces/NS/pods/https:POD:PORT/proxy/PATH`): the body.
    pub async fn pod_proxy_get(
        &self,
        namespace: &str,
        pod: &str,
        port: u16,
        path: &str,
    ) -> Result<String, kube::Error> {
        let uri = format!("/api/v1/namespaces/{namespace}/pods/https:{pod}:{port}/proxy/{path}");
        let request = http::Request::get(&uri)
            .body(Vec::new())
            .map_err(kube::Error::HttpError)?;
        self.client.request_text(request).await
    }

    /// Waits until namespace `name` is gone (polled, within `timeout`).
    pub async fn wait_namespace_gone(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<(), WaitError> {
        poll(timeout, || async move {
            match self.read_cluster_scoped::<Namespace>(name).await? {
                None => Ok(Seen::Done(())),
                Some(_) => Ok(Seen::Waiting(format!("{name} still exists"))),
            }
        })
        .await
    }

    /// [`watch::until`] on the object `namespace/name` of kind `K`.
    pub async fn watch_until<K, T>(
        &self,
        namespace: &str,
        name: &str,
        current: watch::State<K>,
        resource_version: String,
        timeout: Duration,
        done: impl FnMut(Option<&K>) -> Seen<T>,
    ) -> Result<T, WaitError>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        let api = self.api_in::<K>(namespace);
        watch::until(&api, name, current, resource_version, timeout, done).await
    }

    /// [`watch::until_checked`] on the object `namespace/name` of kind `K`.
    pub async fn watch_until_checked<K, T, D, S, Fut, E>(
        &self,
        namespace: &str,
        name: &str,
        current: watch::State<K>,
        timeout: Duration,
        done: D,
        stuck: S,
    ) -> Result<T, WaitError>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug,
        D: FnMut(Option<&K>) -> Seen<T>,
        S: FnMut(Option<K>) -> Fut,
        Fut: std::future::Future<Output = Result<(), E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let api = self.api_in::<K>(namespace);
        watch::until_checked(&api, name, current, timeout, done, stuck).await
    }

    /// The log of `container` (the pod's only one when `None`) of pod
    /// `namespace/pod`.
    pub async fn pod_log(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
    ) -> Result<String, kube::Error> {
        let params = LogParams {
            container: container.map(str::to_string),
            ..LogParams::default()
        };
        self.api_in::<Pod>(namespace).logs(pod, &params).await
    }
}

async fn delete_with<K>(
    api: &Api<K>,
    meta: &ObjectMeta,
    exactly: Exactly,
    grace: Option<u32>,
) -> Result<Deleted, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let params = DeleteParams {
        grace_period_seconds: grace,
        preconditions: Some(Preconditions {
            uid: meta.uid.clone(),
            resource_version: match exactly {
                Exactly::Uid => None,
                Exactly::Version => meta.resource_version.clone(),
            },
        }),
        ..DeleteParams::background()
    };
    match api
        .delete(meta.name.as_deref().unwrap_or_default(), &params)
        .await
    {
        Ok(_) => Ok(Deleted::Yes),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Deleted::Absent),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Deleted::Changed),
        Err(e) => Err(e),
    }
}
