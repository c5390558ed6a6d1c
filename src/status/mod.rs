//! `status`: is the federation healthy right now? Per zone, read-only and
//! concurrent across zones: the API server answers, the DNS load balancer
//! has an address, the DNS forwarding holds every other zone pointing at
//! that zone's load balancer (and nothing else of ours), the StatefulSet's
//! pods are ready on its current revision, the CockroachDB nodes say they
//! are ready (through the API server's pod proxy) with no under-replicated
//! or unavailable ranges, and no certificate (local or in the clusters'
//! Secrets) has expired or is about to.
//!
//! Three parts: [`gather()`] makes only GET requests (through the
//! Kubernetes layer, [`crate::k8s`]) and never writes; [`evaluate()`] turns
//! what was gathered into the report and is pure (the clock is passed in);
//! [`render_text`] writes the report for people. This file holds the data
//! between them: what was gathered, and the report.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use serde::Serialize;

use crate::certs;
use crate::dns::{DnsProvider, Forward};
use crate::k8s::dns_configmap::DnsConfError;
pub use crate::k8s::lb::LbAddresses;
use crate::k8s::{PreflightProblem, error_text};
use crate::resolve::ResolveError;

mod evaluate;
mod gather;
mod render;

pub use evaluate::evaluate;
pub use gather::{gather, read_local_certs};
pub use render::render_text;

/// Version of the `status -o json` format (docs/status.schema.json).
pub const REPORT_VERSION: u32 = 1;

/// Bound of each request to a CockroachDB node through the pod proxy. kube's
/// retry layer retries a 503 (what a node that is not ready answers); a node
/// that answers nothing else within this long is reported not ready.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(3);

/// A certificate that expires within this many days is a warning (the same
/// window in which `plan`/`apply` renew leaf certificates).
pub const EXPIRY_WARNING_DAYS: i64 = certs::RENEW_WITHIN_DAYS;

/// The verdict of one item. Only `fail` makes a zone unhealthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Ok,
    Unknown,
    Warn,
    Fail,
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Health::Ok => "ok",
            Health::Unknown => "unknown",
            Health::Warn => "warn",
            Health::Fail => "FAIL",
        })
    }
}

/// One item of a zone: its verdict and what was seen.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    pub status: Health,
    pub detail: String,
}

impl Item {
    fn new(status: Health, detail: impl Into<String>) -> Self {
        Item {
            status,
            detail: detail.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiItem {
    #[serde(flatten)]
    pub item: Item,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LbItem {
    #[serde(flatten)]
    pub item: Item,
    /// The load balancer's addresses, host names resolved.
    pub addresses: Vec<IpAddr>,
    pub hostnames: Vec<String>,
}

/// One other zone's entry in this zone's DNS forwarding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForwardItem {
    pub zone: String,
    pub domain: String,
    pub status: Health,
    /// Where the cluster forwards the domain to (empty: not forwarded).
    pub servers: Vec<IpAddr>,
    /// That zone's DNS load balancer addresses (empty: not known).
    pub expected: Vec<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForwardingItem {
    #[serde(flatten)]
    pub item: Item,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    pub forwards: Vec<ForwardItem>,
    /// Domains we forward that belong to no zone of the config.
    pub unexpected: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatefulSetItem {
    #[serde(flatten)]
    pub item: Item,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_revision: Option<String>,
}

/// What one CockroachDB node said through the pod proxy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeItem {
    pub pod: String,
    pub status: Health,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodesItem {
    #[serde(flatten)]
    pub item: Item,
    pub pods: Vec<NodeItem>,
    /// Sums over the zone's nodes of CockroachDB's `ranges_underreplicated`
    /// and `ranges_unavailable` (each node counts the ranges it leads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ranges_underreplicated: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ranges_unavailable: Option<u64>,
}

/// One certificate's expiry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CertItem {
    /// `local certs/ca.crt` or `Secret ns/name ca.crt`.
    pub source: String,
    pub status: Health,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_left: Option<i64>,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CertsItem {
    #[serde(flatten)]
    pub item: Item,
    pub certificates: Vec<CertItem>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZoneStatus {
    pub zone: String,
    pub context: String,
    /// No item failed.
    pub ok: bool,
    pub api: ApiItem,
    pub dns_lb: LbItem,
    pub dns_forwarding: ForwardingItem,
    pub statefulset: StatefulSetItem,
    pub nodes: NodesItem,
    pub certificates: CertsItem,
    /// The zone's kubeconfig context could not be used at all (the
    /// command could not run there: exit 2).
    #[serde(skip)]
    pub could_not_connect: bool,
}

impl ZoneStatus {
    /// The failed items, as `item: detail`.
    pub fn failures(&self) -> Vec<String> {
        self.items()
            .into_iter()
            .filter(|(_, i)| i.status == Health::Fail)
            .map(|(name, i)| format!("{name}: {}", i.detail))
            .collect()
    }

    /// Every item with its name, in report order.
    pub fn items(&self) -> Vec<(&'static str, &Item)> {
        vec![
            ("api", &self.api.item),
            ("dns-lb", &self.dns_lb.item),
            ("dns-forwarding", &self.dns_forwarding.item),
            ("statefulset", &self.statefulset.item),
            ("nodes", &self.nodes.item),
            ("certificates", &self.certificates.item),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusReport {
    pub version: u32,
    /// Every zone in the report is ok.
    pub ok: bool,
    pub zones: Vec<ZoneStatus>,
}

/// Certificates as `(source, PEM or why it could not be read)`.
pub type CertSources = Vec<(String, Result<String, CertUnreadable>)>;

/// Why a certificate could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertUnreadable {
    /// Reading its Secret failed (the API error, as one line).
    #[error("{0}")]
    Api(String),
    #[error("the Secret does not exist (run apply)")]
    NoSecret,
    #[error("the Secret has no {0}")]
    NoKey(String),
    #[error("does not exist (run plan or apply)")]
    NoFile,
    /// Reading the local file failed.
    #[error("{0}")]
    Io(String),
}

/// The DNS load balancer Service, as status names it.
fn lb_service() -> String {
    format!(
        "Service {}/{}",
        crate::names::KUBE_SYSTEM,
        crate::names::DNS_LB_SERVICE
    )
}

/// Why a zone's DNS load balancer has no usable address.
#[derive(Debug, thiserror::Error)]
pub enum LbUnread {
    #[error("{}: {}", lb_service(), error_text(.0))]
    Read(kube::Error),
    #[error("{} does not exist (run apply)", lb_service())]
    Missing,
    #[error("{} has no load balancer address", lb_service())]
    NoAddress,
    #[error("{}: {}", lb_service(), .0)]
    Resolve(ResolveError),
    /// The zone's reads did not finish within `--timeout`.
    #[error("{}", timed_out(*.0))]
    TimedOut(Duration),
}

fn timed_out(limit: Duration) -> String {
    format!(
        "no complete answer within {} (--timeout)",
        crate::cli::format_duration(limit)
    )
}

/// Why a zone's API server gave no version.
#[derive(Debug, thiserror::Error)]
pub enum ApiUnread {
    /// The zone's kubeconfig context could not be used at all (the command
    /// could not run there).
    #[error("{} (hint: {})", .0.text(), .0.hint)]
    Connect(PreflightProblem),
    /// The API server did not answer usefully.
    #[error("{} (hint: {})", .0.text(), .0.hint)]
    Unreachable(PreflightProblem),
    /// The zone's reads did not finish within `--timeout`.
    #[error("{}", timed_out(*.0))]
    TimedOut(Duration),
}

/// Why something read once the API server answered has no answer.
#[derive(Debug, thiserror::Error)]
pub enum Unread {
    /// The zone's reads did not finish within `--timeout`.
    #[error("{}", timed_out(*.0))]
    TimedOut(Duration),
    /// Which DNS server the cluster runs could not be found out.
    #[error("{}", .0.text())]
    DnsServer(PreflightProblem),
    #[error(transparent)]
    DnsConfig(DnsConfError),
    #[error("StatefulSet {namespace}/{}: {}", crate::names::STATEFULSET, error_text(.error))]
    StatefulSet {
        namespace: String,
        error: kube::Error,
    },
}

/// What was read from one zone's cluster, before any judgement.
#[derive(Debug, Default)]
pub struct Gathered {
    pub zone: String,
    /// The API server's version, or why the zone could not be asked.
    pub api: Option<Result<String, ApiUnread>>,
    /// Load balancer IPs and host names, host names resolved into IPs
    /// (a host name that does not resolve is in the error).
    pub lb: Option<Result<LbAddresses, LbUnread>>,
    /// The DNS server and the forwarding of ours found in its ConfigMap.
    pub dns: Option<Result<(DnsProvider, Vec<Forward>), Unread>>,
    pub statefulset: Option<Result<Option<StatefulSet>, Unread>>,
    pub nodes: Option<NodesGathered>,
    /// In-cluster certificates: (source, PEM or why it is unreadable).
    pub secrets: CertSources,
}

/// What the pod proxy said for each CockroachDB pod.
#[derive(Debug, Clone, Default)]
pub struct NodesGathered {
    /// Listing the pods failed.
    pub list_error: Option<String>,
    /// (pod, phase, answer of /health?ready=1, answer of /_status/vars).
    pub pods: Vec<(String, String, Option<ProxyAnswer>, Option<ProxyAnswer>)>,
}

/// One pod-proxy request's outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum ProxyAnswer {
    /// 2xx and its body.
    Ok(String),
    /// The node answered it is not ready (503), or kept answering 503 and
    /// others kube retries until [`NODE_TIMEOUT`].
    NotReady(String),
    /// The pod proxy itself failed (no such route, forbidden, ...).
    ProxyError(String),
}

/// Options of [`gather`].
#[derive(Debug, Clone)]
pub struct StatusOptions {
    /// Bound of each zone's reads.
    pub zone_timeout: Duration,
    /// DNS server for load balancer host names.
    pub resolver: Option<SocketAddr>,
}

#[cfg(test)]
mod tests;
