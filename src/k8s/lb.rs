//! The DNS load balancer Service: reading its addresses (host names
//! resolved), and what its status and events say, its addresses and whether
//! the cloud refused to provision it. The functions over a Service and its
//! Events are pure; the reads around them are here too.

use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::{Event, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;

use super::{Cluster, error_text};
use crate::names;
use crate::resolve::{self, ResolveError};

/// Warning reasons after which waiting longer does not help: the cloud's
/// controller gave up on this Service as it is (a mixed-protocol Service, an
/// unknown annotation, a quota), and only a change of the Service or the
/// account fixes it. The cloud-controller-manager's service controller
/// reports `SyncLoadBalancerFailed` (k8s.io/cloud-provider,
/// controllers/service); the AWS Load Balancer Controller reports
/// `FailedBuildModel` and `FailedDeployModel`.
pub const REFUSAL_REASONS: &[&str] = &[
    "SyncLoadBalancerFailed",
    "FailedBuildModel",
    "FailedDeployModel",
];

/// The cloud refused to provision the DNS load balancer Service: `why` is
/// its Warning event (see [`refusal`]). Waiting longer does not help.
#[derive(Debug, thiserror::Error)]
#[error(
    "the cloud refused load balancer Service kube-system/{service}: {why}\n      hint: `kubectl -n kube-system describe service {service}` shows the cloud's events; check dns.protocols, dns.load_balancer and [dns.annotations] for this cloud",
    service = names::DNS_LB_SERVICE
)]
pub struct LbRefused {
    pub why: String,
}

/// IP addresses and host names in the Service's load balancer ingress.
pub fn ingress(svc: &Service) -> (Vec<IpAddr>, Vec<String>) {
    let ingress = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_deref())
        .unwrap_or_default();
    let ips = ingress
        .iter()
        .filter_map(|i| i.ip.as_ref()?.parse().ok())
        .collect();
    let hosts = ingress.iter().filter_map(|i| i.hostname.clone()).collect();
    (ips, hosts)
}

/// The cloud's refusal of `svc`, from its Warning `events`, as
/// `Reason: message`: the newest event with a [`REFUSAL_REASONS`] reason
/// that is not older than our last change of the Service (an older one is
/// about a version of the Service that no longer exists).
pub fn refusal(svc: &Service, events: &[Event]) -> Option<String> {
    let changed = ours_changed_at(svc);
    events
        .iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .filter(|e| {
            e.reason
                .as_deref()
                .is_some_and(|r| REFUSAL_REASONS.contains(&r))
        })
        .filter_map(|e| Some((event_time(e)?, e)))
        .filter(|(at, _)| changed.is_none_or(|c| *at >= c))
        .max_by_key(|(at, _)| *at)
        .map(|(_, e)| {
            format!(
                "{}: {}",
                e.reason.as_deref().unwrap_or_default(),
                e.message.as_deref().unwrap_or("(no message)").trim()
            )
        })
}

/// When our field manager last changed the Service (server time), if known.
fn ours_changed_at(svc: &Service) -> Option<Timestamp> {
    svc.metadata
        .managed_fields
        .as_deref()?
        .iter()
        .filter(|m| m.manager.as_deref() == Some(names::FIELD_MANAGER))
        .filter_map(|m| Some(m.time.as_ref()?.0))
        .max()
}

/// The last time an event happened: `lastTimestamp` (core/v1 events),
/// `eventTime` (events.k8s.io writers), or its creation.
pub(crate) fn event_time(e: &Event) -> Option<Timestamp> {
    e.last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// The zone's DNS load balancer as it is now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LbAddresses {
    /// Its IP addresses, host names resolved; sorted, each once.
    pub ips: Vec<IpAddr>,
    /// The host names in its ingress (a cloud's load balancer DNS name).
    pub hosts: Vec<String>,
}

/// Why the DNS load balancer's addresses could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LbError {
    #[error(
        "reading Service {}/{}: {}",
        names::KUBE_SYSTEM,
        names::DNS_LB_SERVICE,
        error_text(.0)
    )]
    Read(kube::Error),
    #[error("{} (hint: {})", .0, .0.hint())]
    Resolve(ResolveError),
}

/// The zone's DNS load balancer (Service [`names::DNS_LB_SERVICE`] in
/// kube-system) as it is now, its host names resolved once (through
/// `resolver`, else the system's): only reads. `None` when the Service does
/// not exist; empty when it has no address (yet).
pub async fn read_dns_lb(
    cluster: &Cluster,
    resolver: Option<SocketAddr>,
) -> Result<Option<LbAddresses>, LbError> {
    let services: Api<Service> = Api::namespaced(cluster.client.clone(), names::KUBE_SYSTEM);
    let Some(svc) = services
        .get_opt(names::DNS_LB_SERVICE)
        .await
        .map_err(LbError::Read)?
    else {
        return Ok(None);
    };
    let (mut ips, hosts) = ingress(&svc);
    for host in &hosts {
        ips.extend(
            resolve::resolve_host(host, resolver)
                .await
                .map_err(LbError::Resolve)?,
        );
    }
    ips.sort();
    ips.dedup();
    Ok(Some(LbAddresses { ips, hosts }))
}

/// The addresses of [`read_dns_lb`]; empty when the Service or its address
/// does not exist (yet).
pub async fn dns_lb_addresses(
    cluster: &Cluster,
    resolver: Option<SocketAddr>,
) -> Result<Vec<IpAddr>, LbError> {
    Ok(read_dns_lb(cluster, resolver)
        .await?
        .map(|lb| lb.ips)
        .unwrap_or_default())
}

#[cfg(test)]
mod tests;
