//! The Kubernetes layer: the only place that talks to the API server
//! (through kube-rs only: no kubectl). Commands and orchestrators (`apply`,
//! `teardown`, `check`, `status`) call the domain functions here and never
//! name `kube::Api` themselves.
//!
//! Owns: a connected zone ([`Cluster`]; the client itself is built in
//! [`connect`]), pre-flight checks bounded by their own timeout
//! ([`preflight`]), server-side apply of planned objects ([`ssa`]), bounded
//! waits ([`wait`], and [`watch`] for waits driven by a watch), the DNS
//! ConfigMap read-modify-write ([`dns_configmap`]), what the DNS load
//! balancer and workload events say ([`lb`], [`events`]), what one run
//! already knows of a cluster's objects ([`known`]), plain reads, writes
//! and watches of objects for `status`, `check` and apply's Jobs and waits
//! ([`objects`]), and the objects a
//! federation owns, as teardown finds and deletes them ([`owned`]).
//! [`connect_each`] connects every zone at once and collects every failure.
//!
//! Retries of transient errors (429/503/504) happen in one place, kube's
//! retry policy on the client; nothing here loops on errors. A failed
//! request is described by what it says about the server: not reachable,
//! answered with an error status, or still answering 429/503 when
//! pre-flight's time ran out.
//! Knows nothing about the order of steps: `apply` and `teardown` decide that.

use std::fmt::Debug;
use std::future::Future;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::config::Kubeconfig;
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::Zone;

pub mod connect;
pub(crate) mod dns_configmap;
pub(crate) mod events;
pub(crate) mod known;
pub(crate) mod lb;
pub(crate) mod objects;
pub(crate) mod owned;
pub mod preflight;
pub mod ssa;
pub mod wait;
pub(crate) mod watch;

pub use connect::{ConnectError, KubeconfigError, LastSeen, load_kubeconfig};
use known::Known;
pub use lb::dns_lb_addresses;
pub use preflight::{
    ClusterInfo, DnsServer, MIN_MINOR, PREFLIGHT_TIMEOUT, PreflightProblem, connect_problem,
    detect_dns, imports_custom_servers, preflight, reach,
};
pub use ssa::{Action, Applied, ApplyError, apply_object, comparable};
pub use wait::{POLL_FIRST, POLL_MAX, Seen, WaitError, poll};

/// A connected zone.
#[derive(Clone)]
pub struct Cluster {
    pub zone: String,
    pub context: String,
    /// The zone's namespace.
    pub namespace: String,
    pub client: Client,
    /// The API server URL of the context.
    pub server: String,
    /// What the API server last answered, over every attempt.
    pub seen: LastSeen,
    /// The objects read in pre-flight and written since, so that no step
    /// reads again what this run already knows (see [`crate::k8s::known`]).
    pub known: Known,
}

/// Builds the zone's client from its context (running its exec credential
/// plugin, if any, off the async threads). Makes no API call.
pub async fn connect(kubeconfig: &Kubeconfig, zone: &Zone) -> Result<Cluster, ConnectError> {
    let c = connect::connect(kubeconfig, &zone.context).await?;
    Ok(Cluster {
        zone: zone.name.clone(),
        context: zone.context.clone(),
        namespace: zone.namespace.clone(),
        client: c.client,
        server: c.server,
        seen: c.seen,
        known: Known::new(&zone.namespace),
    })
}

impl Cluster {
    /// The object `namespace/name` (`""` for cluster-scoped) as this run
    /// already knows it, else read now (and remembered). `ours`: see
    /// [`Known::get`].
    pub async fn get_opt<K>(
        &self,
        namespace: &str,
        name: &str,
        ours: bool,
    ) -> Result<Option<K>, kube::Error>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug,
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    {
        if let Some(known) = self.known.get::<K>(namespace, name, ours) {
            return Ok(known);
        }
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        let found = api.get_opt(name).await?;
        self.known.read(namespace, name, found.as_ref());
        Ok(found)
    }

    /// Whether the zone namespace exists, as known or read now.
    pub async fn namespace_exists(&self) -> Result<bool, kube::Error> {
        if let Some(known) = self.known.get::<Namespace>("", &self.namespace, false) {
            return Ok(known.is_some());
        }
        let api: Api<Namespace> = Api::all(self.client.clone());
        let found = api.get_opt(&self.namespace).await?;
        self.known.read("", &self.namespace, found.as_ref());
        Ok(found.is_some())
    }

    /// The zone namespace as known or read now.
    pub async fn zone_namespace(&self) -> Result<Option<Namespace>, kube::Error> {
        if let Some(known) = self.known.get::<Namespace>("", &self.namespace, false) {
            return Ok(known);
        }
        let api: Api<Namespace> = Api::all(self.client.clone());
        let found = api.get_opt(&self.namespace).await?;
        self.known.read("", &self.namespace, found.as_ref());
        Ok(found)
    }
}

/// Connects to every zone of `zones` at once and hands each its connected
/// [`Cluster`] (or the [`connect_problem`] of a client that could not be
/// built) to `then` (pre-flight, a reachability check, reads). The results
/// of `then` in the zones' order when every zone succeeded, else every
/// zone that failed with its error: one broken cluster does not hide the
/// others.
pub async fn connect_each<'z, T, E, F, Fut>(
    kubeconfig: &Kubeconfig,
    zones: impl IntoIterator<Item = &'z Zone>,
    then: F,
) -> Result<Vec<T>, Vec<(&'z Zone, E)>>
where
    F: Fn(&'z Zone, Result<Cluster, PreflightProblem>) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let zones: Vec<&Zone> = zones.into_iter().collect();
    let work = zones.iter().map(|&zone| {
        let then = &then;
        async move {
            let cluster = connect(kubeconfig, zone)
                .await
                .map_err(|e| connect_problem(&e, &zone.context));
            then(zone, cluster).await
        }
    });
    let results = futures::future::join_all(work).await;
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for (zone, r) in zones.into_iter().zip(results) {
        match r {
            Ok(v) => ok.push(v),
            Err(e) => failed.push((zone, e)),
        }
    }
    if failed.is_empty() {
        Ok(ok)
    } else {
        Err(failed)
    }
}

/// A kube error as one line, with the API's own message when there is one.
pub fn error_text(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({} {})", s.message, s.code, s.reason),
        other => crate::output::one_line(other),
    }
}
